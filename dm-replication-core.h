/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: sessions and their loaded state, dm-replication-core.c.
 *
 * A session is what the top device and the port of one secondary device
 * share.  While a top table lives, its core holds the two stores, the gate a
 * new epoch closes, the chunk cells, the deferred bio lists, the session's
 * header fields and the failed mode.  The data path (dm-replication-io.c) and
 * the failover's commit (dm-replication-commit.c) build on it; it builds on
 * the stores (dm-replication-cow.c) alone.
 */
#ifndef DM_REPLICATION_CORE_H
#define DM_REPLICATION_CORE_H

#include <linux/bio.h>
#include <linux/list.h>
#include <linux/llist.h>
#include <linux/mempool.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-replication.h"
#include "dm-replication-cow.h"

struct dm_io_client;
struct dm_kcopyd_client;
struct dmr_commit;

/*
 * A chunk lock bucket.  A chunk whose data a job is putting into a store is
 * held by the job's cell (on @busy); bios for it wait on the job.  @pins
 * counts the bios in flight that use a chunk's place in the secondary device
 * or in a store directly (top reads of the secondary device, a failover's
 * writes in place): a port copy, or a failover extent, of a chunk of this
 * bucket waits until none is left.
 */
struct dmr_bucket {
	spinlock_t lock;		/* protects the bucket */
	struct hlist_head busy;		/* cells of the jobs holding a chunk */
	unsigned int pins;
	struct bio_list wait_pins;	/* port writes waiting for no pins */
};

#define DMR_BUCKETS		1024U

/*
 * A job holds a chunk (its cell is on the chunk's bucket) while its data is
 * copied or written into a store: a top write covering a whole chunk, a top
 * write needing the rest of its chunk (a copy-up), or a port write's copy of
 * the old chunk into hidden (copy-before-write).  The data path fills in the
 * rest; the core owns the memory and the cell.
 */
struct dmr_job {
	struct dmr_pending rec;		/* the record, once the data is in */
	struct hlist_node cell;		/* on its bucket's busy list */
	struct bio_list waiters;	/* bios for the chunk, meanwhile */
	struct llist_node done;		/* on core->done_jobs */
	struct dmr_core *core;
	struct dmr_store *store;
	struct bio *bio;
	struct dmr_job *run_next;	/* the next chunk of a run's bio */
	struct dmr_job *run_head;	/* a port run's first job, in the others */
	atomic_t run_left;		/* in a port run's first: jobs to persist */
	int run_err;			/* in a port run's first: its error */
};

/* The loaded replication state of a session: its stores and data path. */
struct dmr_core {
	struct dmr_store *hidden;
	struct dmr_store *active;
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
	struct dmr_commit *commit;	/* the failover's, set by its layer */

	/* The session's shared header fields. */
	struct mutex state_lock;	/* serialises state changes: messages */
	enum dmr_state state;
	u64 seq;
	u64 epoch;
	u64 cursor;			/* the failover's cursor, as on disk */
	u8 uuid[DMR_UUID_SIZE];

	/*
	 * The failed mode: 0, or the errno of the durable write that failed.
	 * Set once by dmr_fail(); only a reload (a new core) clears it.
	 */
	int failed;

	/* Reported by status. */
	atomic_t error;			/* first errno since the checkpoint */
	atomic_t hidden_only;		/* chunks in hidden and not in active */
	unsigned int nr_checkpoints;
	unsigned int low_water_mark;	/* 0: none */
	unsigned int port_copy_chunks;	/* a port first touch copies up to */
	atomic_t low_water_fired;

	/* In-flight bios, and the gate a new epoch closes to drain them. */
	atomic_t inflight;
	wait_queue_head_t drain_wait;
	bool frozen;

	spinlock_t lock;		/* the bio lists below, frozen */
	struct bio_list deferred;	/* to be mapped (again) by defer_work */
	struct bio_list frozen_bios;	/* arrived while frozen */
	struct bio_list persist_waiters;	/* top flushes and FUA writes */
	struct work_struct persist_work;
	struct delayed_work periodic_work;
	/*
	 * A new epoch's header for active, written after the epoch returns, on
	 * a workqueue of its own: it is flushed under state_lock, and works on
	 * wq (the merge's cursor) take state_lock.
	 */
	struct dmr_header active_header;
	struct work_struct active_header_work;
	struct workqueue_struct *header_wq;

	/* The data path's works: dm-replication-io.c sets their functions. */
	struct work_struct defer_work;
	struct work_struct hidden_persist_work;
	struct llist_head done_jobs;
	struct work_struct done_work;
	atomic_t copies;		/* data path copies in flight */

	char name[16];			/* the top's major:minor, for the log */

	struct mutex event_lock;	/* protects ti */
	struct dm_target *ti;		/* the live top's, for events */
	struct work_struct event_work;
};

/* What a session's stores are loaded from: a secondary table's devices. */
struct dmr_core_args {
	struct block_device *secondary;
	struct block_device *hidden;
	struct block_device *active;
	sector_t len;			/* the top's length */
	u32 chunk_sectors;
	const char *name;		/* the top's major:minor */
};

/* Module-wide set-up and tear-down of the core (its job cache). */
int dmr_core_module_init(void);
void dmr_core_module_exit(void);

/* ---- loading ------------------------------------------------------------------ */

/*
 * Reads both stores' headers and checks them against the table, writing
 * nothing.  Return: 0 with @state set to the session's state on disk
 * (running for blank stores), or a negative errno with @error set.
 */
int dmr_core_read_state(const struct dmr_core_args *a, enum dmr_state *state,
			char **error);
/*
 * Loads a session's stores from disk, formatting blank ones, and starts its
 * timer.  The data path's works must be set (dmr_io_init()) before any bio
 * reaches it.  Return: the core or an ERR_PTR with @error set.  Sleeps.
 */
struct dmr_core *dmr_core_load(const struct dmr_core_args *a, char **error);
/*
 * Unloads the stores: nothing may be in flight on the top any more, and the
 * failover's commit must be gone.  What completed is persisted first.
 */
void dmr_core_unload(struct dmr_core *core);

/* ---- events, errors and the failed mode: any context --------------------------- */

const char *dmr_core_name(struct dmr_core *core);
/* Raises a dm event on the live top device, from a worker. */
void dmr_raise_event(struct dmr_core *core);
/* Records a replication error (the first since the checkpoint counts). */
void dmr_set_error(struct dmr_core *core, int err);
/*
 * Puts the session in the failed mode: @what (for the log) was to make
 * something durable and failed with @err.  See the definition.
 */
void dmr_fail(struct dmr_core *core, int err, const char *what);
bool dmr_failed(struct dmr_core *core);
/* Raises the low-water-mark event when @st has too few free slots. */
void dmr_check_low_water(struct dmr_core *core, struct dmr_store *st);

/* ---- the gate: in-flight bios and a new epoch's drain ---------------------------- */

/* Counts a bio in flight when the gate is open.  Return: true if counted. */
bool dmr_gate_try_enter(struct dmr_core *core);
/* Counts @bio in flight, or parks it until the gate opens.  Return: counted. */
bool dmr_gate_enter(struct dmr_core *core, struct bio *bio);
/* Ends a bio's count. */
void dmr_gate_leave(struct dmr_core *core);
/* Closes the gate and waits until nothing is in flight.  Sleeps. */
void dmr_freeze(struct dmr_core *core);
/* Opens the gate: parked bios go to the deferred list. */
void dmr_thaw(struct dmr_core *core);
/* Has defer_work map @bios (counted in flight or not) again; empties it. */
void dmr_defer_bios(struct dmr_core *core, struct bio_list *bios);

/* ---- copies: bios of the target's own -------------------------------------------- */

/*
 * Adds @bytes of @pages to @bio (set up by bio_init(), with a vec for each
 * page), a vec a page, and submits it.
 */
void dmr_submit_pages(struct bio *bio, struct page **pages, unsigned int bytes);

/* ---- chunk cells --------------------------------------------------------------------- */

struct dmr_bucket *dmr_bucket(struct dmr_core *core, u32 chunk);
/* The job whose cell holds @chunk, under the bucket's lock, or NULL. */
struct dmr_job *dmr_cell_holder(struct dmr_bucket *b, u32 chunk);
/* A zeroed job, or NULL.  Return: it. */
struct dmr_job *dmr_job_alloc(struct dmr_core *core, gfp_t gfp);
void dmr_job_free(struct dmr_job *job);
void dmr_job_list_free(struct llist_node *list);
/* Ends a job's hold on its chunk: the bios that waited are mapped again. */
void dmr_cell_release(struct dmr_job *job);

/* ---- persisting records ------------------------------------------------------------ */

/*
 * Commits @st's records, or, in the failed mode, only takes them.  A failed
 * commit fails the session.  Return: the records, for the caller to free.
 */
struct llist_node *dmr_persist(struct dmr_core *core, struct dmr_store *st,
			       bool one_write, int *err);
/*
 * Persists active (and while failing over flushes hidden and the secondary
 * device), then completes the flushes and FUA writes that waited for it.
 * Return: 0 or the error they got.  Sleeps.
 */
int dmr_persist_active(struct dmr_core *core);
/* Commits active for a running top flush without the worker, when it can. */
bool dmr_persist_start(struct dmr_core *core, struct bio *bio);
/* Completes a top flush or FUA write after active's next persist. */
void dmr_wait_persist(struct dmr_core *core, struct bio *bio);

/* ---- headers and epochs: under state_lock ----------------------------------------- */

#define DMR_GEN_HIDDEN_ONLY	BIT(0)	/* active's header keeps its generation */
#define DMR_GEN_ACTIVE_LATER	BIT(1)	/* active's is written by a worker */
#define DMR_GEN_NEW_EPOCH	BIT(2)	/* it empties the stores: no PREFLUSH */

/*
 * Makes a new generation of the session's header durable, with @state,
 * @epoch and @cursor.  See the definition.  Return: 0, or a negative errno
 * with the session failed and the core's fields as they were.  Sleeps.
 */
int dmr_core_new_generation(struct dmr_core *core, enum dmr_state state,
			    u64 epoch, u64 cursor, unsigned int flags);
/* Shows @state, which the header holds; under state_lock. */
void dmr_core_set_state(struct dmr_core *core, enum dmr_state state);
/* Waits for a new epoch's header of active. */
void dmr_wait_active_header(struct dmr_core *core);
/*
 * Moves the session to a new epoch in @state, emptying both stores in
 * constant time.  Return: 0 or a negative errno.  Sleeps.
 */
int dmr_new_epoch(struct dmr_core *core, enum dmr_state state);

/* ---- sessions: the registry, under its mutex ---------------------------------------- */

/*
 * A replication session: what the top device and the port of one secondary
 * device share.  Found by the secondary device's dev_t.  It lives while a
 * table holds it: a port, or a reloaded top table, may outlive the table that
 * made it.  The fields but @core are protected by the registry's mutex.
 */
struct dmr_session {
	struct list_head list;		/* on the registry */
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
 * A secondary table over @md joins the session of its secondary device.
 * Return: the session, or an ERR_PTR with @error set.
 */
struct dmr_session *dmr_session_attach_top(struct mapped_device *md,
					   const struct dmr_core_args *a,
					   char **error);
/* A port table over @md joins the session of a loaded secondary. */
struct dmr_session *dmr_session_attach_port(struct mapped_device *md,
					    dev_t secondary, char **error);
/* Sets the state a top's ctr read from disk, until a core is loaded. */
void dmr_session_set_disk_state(struct dmr_session *ses, enum dmr_state state);
/*
 * A top table leaves: Return: the core to unload, when it was the last, or
 * NULL.  Port bios no longer see it.
 */
struct dmr_core *dmr_session_detach_top(struct dmr_session *ses);
void dmr_session_detach_port(struct dmr_session *ses);
/*
 * The session's loaded core, or NULL.  For the top's own table after its
 * resume, and for its table-swapping callbacks (dm serialises those).
 */
struct dmr_core *dmr_session_core(struct dmr_session *ses);
/* Makes @core, loaded from @a, the session's: the port sees it. */
void dmr_session_publish(struct dmr_session *ses, struct dmr_core *core,
			 const struct dmr_core_args *a);
/* Takes the session's core away; once this returns, no port bio sees it. */
struct dmr_core *dmr_session_withdraw(struct dmr_session *ses);
/* The port's view: the core under rcu_read_lock(), or NULL. */
struct dmr_core *dmr_session_core_rcu(struct dmr_session *ses);

#endif /* DM_REPLICATION_CORE_H */
