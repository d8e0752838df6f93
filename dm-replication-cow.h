/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: the stores (hidden and active), dm-replication-cow.c.
 *
 * A store maps chunks of the secondary device to data slots of its own
 * device, for one epoch at a time.  Its format on disk is its own business
 * (dm-replication-format.h); what the rest of the target sees is this API:
 * an opaque store, its decoded header, and records that wait for a commit.
 *
 * Calls below the store: only the kernel (dm-bufio, dm-io, RCU).
 */
#ifndef DM_REPLICATION_COW_H
#define DM_REPLICATION_COW_H

#include <linux/blk_types.h>
#include <linux/llist.h>
#include <linux/types.h>

#define DMR_HEADER_SECTORS	8U	/* the headers take the first 4 KiB */
#define DMR_UUID_SIZE		16U

struct dm_io_client;
struct dmr_store;

/* Which store a device holds, so swapped devices are caught. */
enum dmr_role {
	DMR_ROLE_HIDDEN = 1,
	DMR_ROLE_ACTIVE = 2,
};

/* Where things are on a store device, in sectors. */
struct dmr_layout {
	u64 meta_start;
	u64 meta_blocks;
	u64 data_start;
	u64 nr_slots;
};

/* A decoded header: the session's shared fields and the store's layout. */
struct dmr_header {
	enum dmr_role role;
	u64 seq;			/* generation */
	u64 epoch;
	u8 uuid[DMR_UUID_SIZE];
	u32 state;			/* an enum dmr_state */
	u32 chunk_sectors;
	u64 secondary_sectors;
	struct dmr_layout layout;
	u64 commit_cursor;
};

/* How the two stores' headers are reconciled when a session is loaded. */
enum dmr_load_action {
	DMR_LOAD_RESUME,	/* both valid: resume the newer one's state */
	DMR_LOAD_FORMAT,	/* both blank: a new session */
	DMR_LOAD_FINISH_FORMAT,	/* one blank, the other never used */
};

/*
 * A record waiting for its store's next commit, embedded by its owner.
 * @mapped says the chunk is in the store's map: the commit marks the
 * mapping durable.
 */
struct dmr_pending {
	struct llist_node node;
	u32 chunk;
	u32 slot;
	bool mapped;
};

/* ---- geometry and headers: pure functions -------------------------------- */

/* Lays out a store device of @dev_sectors for chunks of @chunk_sectors. */
void dmr_layout_init(struct dmr_layout *l, u64 dev_sectors, u32 chunk_sectors);

/* The data slots a store device of @dev_sectors holds, 0 when none fits. */
sector_t dmr_store_capacity(sector_t dev_sectors, sector_t chunk_sectors);

/*
 * Decides how to load a session from its stores' headers (@x_rc: 0 valid,
 * 1 blank, as dmr_store_read_header() gives).  Return: 0 with @action set,
 * or -EINVAL with @error set.
 */
int dmr_headers_reconcile(int hidden_rc, const struct dmr_header *hidden,
			  int active_rc, const struct dmr_header *active,
			  enum dmr_load_action *action, char **error);

/*
 * Reads a store device's header and checks it against the table: its role,
 * chunk size, target length and the device's size.  Return: 0 with @h set,
 * 1 for a blank store, or a negative errno with @error set.  Sleeps.
 */
int dmr_store_read_header(struct dm_io_client *io, struct block_device *bdev,
			  enum dmr_role role, u32 chunk_sectors,
			  u64 secondary_sectors, struct dmr_header *h,
			  char **error);

/* Sorts @n chunks and drops duplicates.  Return: how many are left. */
u32 dmr_sort_unique(u32 *chunks, u32 n);

/* ---- a store ---------------------------------------------------------------- */

/* A store with no mapping and no device.  Return: it, or NULL. */
struct dmr_store *dmr_store_create(const char *name, enum dmr_role role,
				   const struct dmr_layout *layout,
				   u32 chunk_sectors);
/* Frees a store, closing its device; nothing may be pending or in flight. */
void dmr_store_destroy(struct dmr_store *st);
/* Attaches the store to its device.  Return: 0 or a negative errno. */
int dmr_store_open(struct dmr_store *st, struct block_device *bdev);

struct block_device *dmr_store_bdev(struct dmr_store *st);
enum dmr_role dmr_store_role(struct dmr_store *st);
const struct dmr_layout *dmr_store_layout(struct dmr_store *st);
/* The device sector where @slot's data starts. */
sector_t dmr_store_slot_sector(struct dmr_store *st, u32 slot);
/* Slots given out since the checkpoint, and chunks mapped. */
u32 dmr_store_used(struct dmr_store *st);
u32 dmr_store_nr_mapped(struct dmr_store *st);

/*
 * Rebuilds the mapping of epoch @epoch from the device's records: see the
 * definition.  Return: 0 or a negative errno with @error set.  Sleeps.
 */
int dmr_store_load(struct dmr_store *st, u64 epoch, u64 nr_chunks,
		   struct dmr_store *other, u32 *not_in_other, char **error);
/*
 * Writes @h into the header copy of its generation, FUA, with PREFLUSH when
 * @flush_first.  Return: 0 or a negative errno.  Sleeps.
 */
int dmr_store_write_header(struct dmr_store *st, struct dm_io_client *io,
			   const struct dmr_header *h, bool flush_first);

/* ---- the mapping and the allocator: any context ---------------------------- */

/*
 * Takes @n consecutive free slots for chunks @chunk to @chunk + @n - 1, all
 * or none (a run maps compactly), or one slot for a chunk on its own.
 * Return: 0, -ENOSPC, or -EAGAIN when the map has no room made for them:
 * dmr_store_reserve() first.
 */
int dmr_store_alloc_run(struct dmr_store *st, u32 chunk, u32 n, u32 *first);
int dmr_store_alloc_slot(struct dmr_store *st, u32 *slot);
/*
 * Makes room in the map for @n more single slots, and for runs when one
 * found none.  Return: 0 or -ENOMEM.  Sleeps.
 */
int dmr_store_reserve(struct dmr_store *st, u32 n);
/* Is @chunk mapped (at @slot)?  The caller keeps the epoch from switching. */
bool dmr_store_lookup(struct dmr_store *st, u32 chunk, u32 *slot);
/* Is @chunk mapped, with its record durable? */
bool dmr_store_lookup_durable(struct dmr_store *st, u32 chunk);
/*
 * Maps @chunk to @slot, a slot given out; @durable says its record is
 * committed already.  Process context; never sleeps or allocates.
 * Return: 0, -EEXIST or -ENOMEM.
 */
int dmr_store_insert(struct dmr_store *st, u32 chunk, u32 slot, bool durable);
/*
 * Lists the chunks the store maps into @chunks (room for @max), in no
 * particular order; the map must not change meanwhile.  Return: 0 or -EIO.
 */
int dmr_store_collect(struct dmr_store *st, u32 *chunks, u32 max, u32 *n);

/* ---- records and commits ------------------------------------------------------ */

/* Queues a record for the next commit; the caller's data for it is in. */
void dmr_store_queue(struct dmr_store *st, struct dmr_pending *p);
/* Does a record wait for a commit? */
bool dmr_store_has_pending(struct dmr_store *st);
/* Takes every record that waits, for a caller that will not commit them. */
struct llist_node *dmr_store_take_pending(struct dmr_store *st);
/* Are all the store's records durable?  See the definition. */
bool dmr_store_clean(struct dmr_store *st);
/* Has a commit failed?  Then the store is never clean again. */
bool dmr_store_failed(struct dmr_store *st);
/*
 * Makes the pending records durable, or fails the store for good; with
 * @one_write in one write when they lie in one block.  Return: the records
 * taken, for the caller to free; @err set to 0 or the error.  Sleeps.
 */
struct llist_node *dmr_store_commit(struct dmr_store *st, bool one_write,
				    int *err);
/*
 * Ends a commit started by dmr_store_commit_start(), in task context: the
 * records taken, for the callee to free, and 0 or the error.
 */
typedef void (*dmr_commit_done_fn)(void *context, void *arg,
				   struct llist_node *records, int err);
/*
 * Commits without waiting when it can (see the definition); never waits
 * for I/O, so map() may call it.  Return: true when started.
 */
bool dmr_store_commit_start(struct dmr_store *st, struct workqueue_struct *wq,
			    dmr_commit_done_fn done, void *context, void *arg);

/* ---- epochs ------------------------------------------------------------------- */

/* Allocates the next epoch's empty map, so the switch cannot fail. */
int dmr_store_prepare_reset(struct dmr_store *st);
/*
 * Empties the store for @epoch in constant time, nothing in flight; the
 * records that will never be committed are set in @discarded.
 */
void dmr_store_reset(struct dmr_store *st, u64 epoch,
		     struct llist_node **discarded);

/* Module-wide set-up and tear-down of the stores. */
int dmr_store_module_init(void);
void dmr_store_module_exit(void);

#endif /* DM_REPLICATION_COW_H */
