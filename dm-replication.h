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
#include <linux/mempool.h>
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
	DMR_MSG_COMMIT_DEPTH,
};

/* Extents of the failover's merge in flight: the commit_depth message. */
#define DMR_COMMIT_DEPTH_DEFAULT	8U
#define DMR_COMMIT_DEPTH_MAX		64U
/* The largest extent the merge copies at once, in sectors (1 MiB). */
#define DMR_EXTENT_SECTORS		2048U

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
	DMR_ACT_COMMIT_DEPTH,	/* set the failover's commit depth */
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
struct dm_kcopyd_client;
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
int dmr_store_alloc_slots(struct dmr_store *st, u32 n, u32 *first);
int dmr_store_alloc_slot(struct dmr_store *st, u32 *slot);
u32 dmr_store_used(struct dmr_store *st);
bool dmr_store_lookup(struct dmr_store *st, u32 chunk, u32 *slot);
bool dmr_store_lookup_durable(struct dmr_store *st, u32 chunk);
int dmr_store_collect(struct dmr_store *st, u32 *chunks, u32 max, u32 *n);
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
bool dmr_store_clean(struct dmr_store *st);
struct llist_node *dmr_store_commit(struct dmr_store *st, int *err);
int dmr_read_header_area(struct dm_io_client *io, struct block_device *bdev,
			 void *area);
int dmr_write_header(struct dm_io_client *io, struct block_device *bdev,
		     const struct dmr_header *h, bool flush_first);
int dmr_cow_init(void);
void dmr_cow_exit(void);

/* ---------------------------------------------------------------------------
 * Sessions and the loaded replication state (dm-replication.c).
 */

/* A chunk lock bucket: see the chunk locking comment in dm-replication.c. */
struct dmr_bucket {
	spinlock_t lock;		/* protects the bucket */
	struct hlist_head busy;		/* jobs holding a chunk */
	unsigned int readers;		/* top reads of the secondary, or a
					 * failover's writes in place, in flight
					 */
	struct bio_list wait_readers;	/* port writes waiting for them */
};

/* A run of consecutive plan chunks, copied from consecutive slots of a store. */
struct dmr_extent {
	struct list_head list;		/* on the merge's extents, in order */
	struct dmr_core *core;
	u32 first;			/* its first chunk */
	u32 nr;				/* its chunks */
	enum dmr_role store;		/* which store it is copied from */
	u32 slot;			/* its first slot */
	bool done;			/* copied without error */
};

#define DMR_BUCKETS		1024U

/*
 * The merge-down commit of a failover (dm-replication-commit.c).
 *
 * The plan is the sorted list of chunks held by either store at or above the
 * durable cursor.  It is copied in extents, in plan order; chunks below
 * @started belong to extents already claimed, chunks below @durable are in
 * the secondary device and the cursor saying so is on disk.
 */
struct dmr_merge {
	spinlock_t lock;		/* the fields below but plan and work */
	u32 *plan;			/* chunks to merge, ascending */
	u32 nr_plan;
	u32 next;			/* plan index of the next extent */
	u64 durable;			/* the cursor on disk: routes writes */
	u64 cursor;			/* the cursor headers are written with */
	u64 started;			/* chunks below are claimed by extents */
	struct list_head extents;	/* claimed and not yet durable */
	struct dmr_extent *blocked;	/* claimed, waiting for writers */
	unsigned int claimed;		/* extents claimed, not yet copied */
	unsigned int depth;		/* extents in flight at most */
	u32 nr_copied;			/* plan chunks in copied extents */
	u32 nr_durable;			/* plan chunks below the cursor */
	int err;			/* the first error: the merge stops */
	bool paused;			/* the top is suspended */
	bool wait_writers;		/* @blocked waits for a bucket */
	struct bio_list waiters;	/* writes to chunks in [durable, started) */
	wait_queue_head_t idle;		/* no extent is copying */
	unsigned int copying;
	unsigned long since;		/* jiffies at the last cursor commit */
	unsigned long start;		/* jiffies at the start */
	struct work_struct work;	/* claims and copies extents */
	struct work_struct cursor_work;	/* makes progress durable */
};

/* The loaded replication state of a session: its stores and data path. */
struct dmr_core {
	struct dmr_store hidden;
	struct dmr_store active;
	struct block_device *secondary;
	sector_t len;
	u32 chunk_sectors;
	unsigned int chunk_shift;
	u64 nr_chunks;
	struct dm_io_client *io;
	struct dm_kcopyd_client *kc;
	struct workqueue_struct *wq;
	mempool_t job_pool;
	struct dmr_bucket *buckets;

	/* The session's shared header fields. */
	struct mutex state_lock;	/* serialises messages: state changes */
	enum dmr_state state;
	u64 seq;
	u64 epoch;
	u8 uuid[DMR_UUID_SIZE];

	/* Reported by status. */
	atomic_t error;			/* first errno since the checkpoint */
	atomic_t hidden_only;		/* chunks in hidden and not in active */
	unsigned int nr_checkpoints;
	unsigned int low_water_mark;	/* 0: none */
	atomic_t low_water_fired;

	/* In-flight bios, and the gate a checkpoint closes to drain them. */
	atomic_t inflight;
	wait_queue_head_t drain_wait;
	bool frozen;

	spinlock_t lock;		/* the bio lists below, frozen */
	struct bio_list deferred;	/* to be mapped (again) by the worker */
	struct bio_list frozen_bios;	/* arrived while frozen */
	struct bio_list commit_waiters;	/* top flushes and FUA writes */
	struct work_struct defer_work;
	struct work_struct active_commit_work;
	struct work_struct hidden_commit_work;
	/* A new epoch's header for active, written after the epoch returns. */
	struct dmr_header active_header;
	struct work_struct active_header_work;
	struct delayed_work periodic_work;
	struct llist_head done_jobs;
	struct work_struct done_work;

	struct dmr_merge merge;
	char name[16];			/* the top's major:minor, for the log */

	struct mutex event_lock;	/* protects ti */
	struct dm_target *ti;		/* the live top's, for events */
	struct work_struct event_work;
};

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
	enum dmr_state disk_state;	/* read by the top's ctr, until loaded */
	u32 chunk_sectors;
};

/*
 * The callbacks of one mode.  ctr gets the table's arguments after the mode
 * word and sets ti->private to the mode's struct dmr_target.
 */
struct dmr_mode_ops {
	const char *name;
	int (*ctr)(struct dm_target *ti, struct dm_arg_set *as);
	void (*dtr)(struct dm_target *ti);
	int (*map)(struct dm_target *ti, struct bio *bio);
	void (*status_info)(struct dm_target *ti, char *result,
			    unsigned int maxlen);
	void (*status_table)(struct dm_target *ti, char *result,
			     unsigned int maxlen);
	int (*message)(struct dm_target *ti, unsigned int argc, char **argv);
	int (*iterate_devices)(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data);
	void (*io_hints)(struct dm_target *ti, struct queue_limits *limits);
	int (*end_io)(struct dm_target *ti, struct bio *bio,
		      blk_status_t *error);
	int (*preresume)(struct dm_target *ti);
	void (*postsuspend)(struct dm_target *ti);
};

/* The primary mode (dm-replication-primary.c). */
extern const struct dmr_mode_ops dmr_primary_ops;

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
		      unsigned int *value, char **error);
const char *dmr_state_name(enum dmr_state state);
enum dmr_action dmr_msg_action(enum dmr_state state, enum dmr_msg msg);

/* dm-replication.c: what the merge-down commit uses of the session. */
void dmr_freeze(struct dmr_core *core);
void dmr_thaw(struct dmr_core *core);
int dmr_active_commit(struct dmr_core *core);
int dmr_core_write_header(struct dmr_core *core, struct dmr_store *st);
int dmr_new_epoch(struct dmr_core *core, enum dmr_state state);
void dmr_wait_active_header(struct dmr_core *core);
void dmr_set_error(struct dmr_core *core, int err);
void dmr_raise_event(struct dmr_core *core);
void dmr_defer_bios(struct dmr_core *core, struct bio_list *bios);
struct dmr_bucket *dmr_bucket(struct dmr_core *core, u32 chunk);
const char *dmr_core_name(struct dmr_core *core);

/* dm-replication-commit.c: the merge-down commit (failover). */

/* Where a top bio goes while the session is failing over (or failed to). */
enum dmr_route {
	DMR_ROUTE_SECONDARY,	/* the chunk is in no store, or merged durably */
	DMR_ROUTE_ACTIVE,	/* active's slot */
	DMR_ROUTE_HIDDEN,	/* hidden's slot, written in place */
	DMR_ROUTE_COPY_UP,	/* a new active slot, copied up from hidden */
	DMR_ROUTE_WAIT,		/* until the cursor covering the chunk is durable */
};

/* Where a chunk is copied from: a store's slot, for the merge's extents. */
typedef bool (*dmr_source_fn)(void *ctx, u32 chunk, enum dmr_role *store,
			      u32 *slot);

u32 dmr_plan_finish(u32 *chunks, u32 n, u64 cursor);
u32 dmr_plan_extent(const u32 *plan, u32 n, u32 i, u32 max,
		    dmr_source_fn source, void *ctx);
enum dmr_route dmr_route_read(u64 chunk, u64 durable, bool in_active,
			      bool in_hidden);
enum dmr_route dmr_route_write(enum dmr_state state, u64 chunk, u64 durable,
			       u64 started, bool in_active, bool in_hidden);
u64 dmr_merge_cursor(const struct list_head *extents, u64 started,
		     u32 *nr_chunks, unsigned int *nr_extents);

void dmr_merge_init(struct dmr_core *core);
void dmr_merge_exit(struct dmr_core *core);
int dmr_commit_load(struct dmr_core *core);
int dmr_commit_start(struct dmr_core *core);
void dmr_commit_pause(struct dmr_core *core);
void dmr_commit_resume(struct dmr_core *core);
int dmr_commit_set_depth(struct dmr_core *core, unsigned int depth);
u32 dmr_commit_remaining(struct dmr_core *core);
enum dmr_route dmr_commit_route_write(struct dmr_core *core, struct bio *bio,
				      u32 chunk, bool in_active,
				      bool in_hidden);
u64 dmr_commit_durable(struct dmr_core *core);
void dmr_commit_writer_done(struct dmr_core *core);

#endif /* DM_REPLICATION_H */
