/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: COLO-style block replication as a device-mapper target.
 *
 * Private header shared by the target (dm-replication.c), the COW stores
 * (dm-replication-cow.c), the merge-down commit (dm-replication-commit.c) and
 * the KUnit suites.
 */
#ifndef DM_REPLICATION_H
#define DM_REPLICATION_H

#include <linux/bio.h>
#include <linux/device-mapper.h>
#include <linux/list.h>
#include <linux/llist.h>
#include <linux/mutex.h>
#include <linux/rhashtable-types.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#define DM_MSG_PREFIX "replication"

/* Chunk sizes are in 512-byte sectors: a power of two from 4 KiB to 1 MiB. */
#define DMR_MIN_CHUNK_SECTORS	8U
#define DMR_MAX_CHUNK_SECTORS	2048U

/*
 * The three modes of the one target type "replication", as QEMU's replication
 * driver has modes.  A second type "replication-port" would not fit the
 * 15-character limit on dm target type names.
 */
enum dmr_mode {
	DMR_MODE_SECONDARY,
	DMR_MODE_PRIMARY,
	DMR_MODE_PORT,
};

/* Messages understood by a secondary (top) device. */
enum dmr_msg {
	DMR_MSG_CHECKPOINT,
	DMR_MSG_STOP,
	DMR_MSG_FAILOVER,
};

/* Replication states of a secondary, as reported by status and kept on disk. */
enum dmr_state {
	DMR_STATE_RUNNING,
	DMR_STATE_FAILOVER,
	DMR_STATE_FAILOVER_FAILED,
	DMR_STATE_DONE,
	DMR_NR_STATES,
};

/* What a message does in a state: the state machine's one table. */
enum dmr_action {
	DMR_ACT_NOTHING,	/* succeed, change nothing */
	DMR_ACT_CHECKPOINT,
	DMR_ACT_STOP,
	DMR_ACT_FAILOVER,
	DMR_ACT_REFUSE,		/* fail with EINVAL, naming the state */
};

/* Feature arguments of a secondary table. */
struct dmr_secondary_features {
	bool has_low_water_mark;
	unsigned int low_water_mark;	/* in free chunks */
};

/* ---------------------------------------------------------------------------
 * On-disk format of a COW store (dm-replication-cow.c).
 *
 * A store device holds, in 512-byte sectors:
 *
 *   0          header copy A  (written when seq is even)
 *   1          header copy B  (written when seq is odd)
 *   2 .. 7     zero
 *   8 ..       metadata: one 16-byte record per data slot, 256 a 4 KiB block
 *   data_start data: nr_slots chunks, data_start a multiple of the chunk size
 *
 * A record maps its slot to a chunk of the secondary device.  It is live when
 * its epoch equals the store's epoch; a checkpoint bumps the epoch (in both
 * stores' headers) and so drops every record at once.
 */
#define DMR_MAGIC		0x4c504552U	/* "REPL" */
#define DMR_VERSION		1U
#define DMR_HEADER_SECTORS	8U	/* the first 4 KiB */
#define DMR_META_BLOCK_SIZE	4096U
#define DMR_META_BLOCK_SECTORS	(DMR_META_BLOCK_SIZE >> SECTOR_SHIFT)
#define DMR_RECORD_SIZE		16U
#define DMR_RECORDS_PER_BLOCK	(DMR_META_BLOCK_SIZE / DMR_RECORD_SIZE)
#define DMR_UUID_SIZE		16U

/* Which store a header belongs to, so swapped devices are caught. */
enum dmr_role {
	DMR_ROLE_HIDDEN = 1,
	DMR_ROLE_ACTIVE = 2,
};

struct dmr_disk_header {
	__le32 csum;		/* crc32c of the rest of the 512 bytes */
	__le32 magic;
	__le32 version;
	__le32 role;
	__le64 seq;		/* generation, the same in both stores */
	__le64 epoch;		/* records of this epoch are live */
	u8 uuid[DMR_UUID_SIZE];	/* the session, the same in both stores */
	__le32 state;
	__le32 chunk_sectors;
	__le64 secondary_sectors;	/* the top device's length */
	__le64 nr_slots;
	__le64 meta_start;
	__le64 data_start;
	__le64 commit_cursor;	/* failover progress, in chunks */
	u8 reserved[416];
} __packed;

struct dmr_disk_record {
	__le64 chunk;
	__le64 epoch;
} __packed;

/* Where things are on a store device, in sectors. */
struct dmr_layout {
	u64 meta_start;
	u64 meta_blocks;
	u64 data_start;
	u64 nr_slots;
};

/* A decoded header. */
struct dmr_header {
	enum dmr_role role;
	u64 seq;
	u64 epoch;
	u8 uuid[DMR_UUID_SIZE];
	enum dmr_state state;
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

/* ---------------------------------------------------------------------------
 * In-core COW stores.
 */

struct dmr_map;
struct dm_io_client;
struct dm_bufio_client;

/*
 * One mapping of a store: chunk of the secondary device -> slot.  The top bit
 * of @slot says the mapping's record is durable (committed); slots are below
 * %DMR_MAX_SLOTS.
 */
struct dmr_map_entry {
	struct rhash_head node;
	u32 chunk;
	u32 slot;
};

#define DMR_SLOT_DURABLE	BIT(31)
#define DMR_MAX_SLOTS		(DMR_SLOT_DURABLE - 1)

/* A record waiting for the next metadata commit of its store. */
struct dmr_pending {
	struct llist_node node;
	u32 chunk;
	u32 slot;
	struct dmr_map_entry *entry;	/* marked durable by the commit */
};

struct dmr_store {
	const char *name;		/* "hidden" or "active" */
	enum dmr_role role;
	struct block_device *bdev;
	struct dm_bufio_client *bufio;
	struct dmr_layout layout;

	/* The mapping of this epoch, swapped for an empty one at checkpoint. */
	struct dmr_map *map;

	spinlock_t alloc_lock;		/* next_slot */
	u32 next_slot;			/* slots below it are used */
	atomic_t nr_mapped;		/* chunks in the map */

	/* Commits: one at a time, and never across an epoch switch. */
	struct mutex commit_lock;
	u64 epoch;			/* records are stamped with it */
	struct dmr_map *spare;		/* the empty map of the next epoch */
	struct llist_head pending;
	u64 *block_epoch;		/* epoch of each metadata block's content */
};

/* dm-replication-cow.c */
int dmr_parse_chunk_size(const char *arg, sector_t *chunk_sectors,
			 char **error);
void dmr_layout_init(struct dmr_layout *l, u64 dev_sectors, u32 chunk_sectors);
sector_t dmr_store_capacity(sector_t dev_sectors, sector_t chunk_sectors);
void dmr_header_encode(const struct dmr_header *h, struct dmr_disk_header *d);
int dmr_header_decode(const struct dmr_disk_header *d, struct dmr_header *h,
		      char **error);
int dmr_header_pick(const void *area, struct dmr_header *h, char **error);
int dmr_header_check(const struct dmr_header *h, enum dmr_role role,
		     u32 chunk_sectors, u64 secondary_sectors, u64 dev_sectors,
		     char **error);
int dmr_headers_reconcile(int hidden_rc, const struct dmr_header *hidden,
			  int active_rc, const struct dmr_header *active,
			  enum dmr_load_action *action, char **error);
bool dmr_record_live(const struct dmr_disk_record *r, u64 epoch,
		     u64 nr_chunks, u32 *chunk);

int dmr_store_init(struct dmr_store *st, const char *name, enum dmr_role role,
		   const struct dmr_layout *layout);
void dmr_store_exit(struct dmr_store *st);
int dmr_store_alloc_slot(struct dmr_store *st, u32 *slot);
u32 dmr_store_used(struct dmr_store *st);
bool dmr_store_lookup(struct dmr_store *st, u32 chunk, u32 *slot);
bool dmr_store_lookup_durable(struct dmr_store *st, u32 chunk);
int dmr_store_insert(struct dmr_store *st, struct dmr_map_entry *e);
struct dmr_map_entry *dmr_store_alloc_entry(gfp_t gfp);
void dmr_store_free_entry(struct dmr_map_entry *e);
int dmr_store_prepare_reset(struct dmr_store *st);
void dmr_store_reset(struct dmr_store *st, u64 epoch,
		     struct llist_node **discarded);
int dmr_store_open(struct dmr_store *st, struct block_device *bdev);
void dmr_store_close(struct dmr_store *st);
int dmr_store_load(struct dmr_store *st, u64 epoch, u64 nr_chunks,
		   struct dmr_store *other, u32 *not_in_other, char **error);
struct llist_node *dmr_store_commit(struct dmr_store *st, int *err);
int dmr_read_header_area(struct dm_io_client *io, struct block_device *bdev,
			 void *area);
int dmr_write_header(struct dm_io_client *io, struct block_device *bdev,
		     const struct dmr_header *h);
int dmr_cow_init(void);
void dmr_cow_exit(void);

/* ---------------------------------------------------------------------------
 * Sessions and the loaded replication state (dm-replication.c).
 */

/* A chunk lock bucket: see the chunk locking comment in dm-replication.c. */
struct dmr_bucket {
	spinlock_t lock;		/* protects the bucket */
	struct hlist_head busy;		/* jobs holding a chunk */
	unsigned int readers;		/* top reads of the secondary in flight */
	struct bio_list wait_readers;	/* port writes waiting for them */
};

struct dmr_core;

/*
 * A replication session: what the top device and the port of one secondary
 * device share.  Found by the secondary device's dev_t.  It lives while a
 * table holds it: a port, or a reloaded top table, may outlive the table that
 * made it.  The fields but @core are protected by the session list's mutex.
 */
struct dmr_session {
	struct list_head list;		/* on the global session list */
	dev_t secondary_dev;
	struct mapped_device *top_md;	/* the secondary's mapped device */
	struct mapped_device *port_md;	/* the port's, or NULL */
	unsigned int nr_top;		/* secondary tables holding it */
	unsigned int nr_port;		/* port tables holding it */
	struct dmr_core __rcu *core;	/* loaded stores, while a top lives */
	dev_t hidden_dev, active_dev;	/* what the core was loaded from */
	u32 chunk_sectors;
};

struct dmr_mode_ops;

/*
 * What ti->private points to in every mode: the first member of the mode's
 * own structure, which the mode's callbacks reach with container_of().
 */
struct dmr_target {
	const struct dmr_mode_ops *ops;
};

/* A secondary (top) target instance. */
struct dmr_secondary {
	struct dmr_target base;
	struct dm_target *ti;
	struct dm_dev *secondary;
	struct dm_dev *hidden;
	struct dm_dev *active;
	sector_t chunk_sectors;
	struct dmr_secondary_features features;
	struct dmr_session *session;
};

/* A primary target instance. */
struct dmr_primary {
	struct dmr_target base;
	struct dm_target *ti;
	struct dm_dev *local;
	struct dm_dev *remote;
};

/* A port target instance. */
struct dmr_port {
	struct dmr_target base;
	struct dm_target *ti;
	struct dm_dev *secondary;
	struct dmr_session *session;
};

/* dm-replication.c: argument parsing and the state machine. */
int dmr_parse_mode(const char *arg, enum dmr_mode *mode, char **error);
int dmr_parse_secondary_features(struct dm_arg_set *as,
				 struct dmr_secondary_features *f,
				 char **error);
int dmr_parse_no_features(struct dm_arg_set *as, char **error);
int dmr_parse_message(unsigned int argc, char **argv, enum dmr_msg *msg,
		      char **error);
const char *dmr_state_name(enum dmr_state state);
enum dmr_action dmr_msg_action(enum dmr_state state, enum dmr_msg msg);

/* dm-replication-commit.c: merge-down commit (failover). */
int dmr_commit_start(struct dmr_core *core);

#endif /* DM_REPLICATION_H */
