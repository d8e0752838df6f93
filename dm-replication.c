// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: COLO-style block replication as a device-mapper target.
 *
 * One target type, "replication", with three modes:
 *
 *   replication secondary <secondary dev> <hidden dev> <active dev> <chunk size>
 *               [<#feature args> [<feature arg>]*]
 *   replication primary <local dev> <remote dev> [<#feature args> [<feature arg>]*]
 *   replication port <secondary dev>
 *
 * This file owns the target: construction, destruction, mapping, status and
 * messages.  The COW stores live in dm-replication-cow.c and the merge-down
 * commit in dm-replication-commit.c.
 */
#include <linux/blkdev.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/hash.h>
#include <linux/mempool.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-replication.h"

static const struct dmr_mode_ops *dmr_ops(struct dm_target *ti)
{
	return ((struct dmr_target *)ti->private)->ops;
}

/* ---------------------------------------------------------------------------
 * Argument parsing.  Pure functions of their arguments, tested by KUnit.
 */

static const char * const dmr_mode_names[] = {
	[DMR_MODE_SECONDARY] = "secondary",
	[DMR_MODE_PRIMARY] = "primary",
	[DMR_MODE_PORT] = "port",
};

/**
 * dmr_parse_mode() - parse the first table argument, the mode
 * @arg: the argument, or NULL when the table has none
 * @mode: set to the mode on success
 * @error: set to a message for ti->error on failure
 *
 * Return: 0 on success, -EINVAL with @error set otherwise.
 */
int dmr_parse_mode(const char *arg, enum dmr_mode *mode, char **error)
{
	unsigned int i;

	if (!arg) {
		*error = "Missing mode: expected secondary, primary or port";
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(dmr_mode_names); i++) {
		if (!strcmp(arg, dmr_mode_names[i])) {
			*mode = i;
			return 0;
		}
	}
	*error = "Unknown mode: expected secondary, primary or port";
	return -EINVAL;
}

/*
 * Reads the feature argument group that may close a table: a count and that
 * many words.  Leaves the group's words in @as and their count in @argc.
 */
static int dmr_read_feature_group(struct dm_arg_set *as, unsigned int max,
				  unsigned int *argc, char **error)
{
	const struct dm_arg arg = {
		.min = 0,
		.max = max,
		.error = "Invalid number of feature arguments",
	};

	*argc = 0;
	if (!as->argc)
		return 0;
	return dm_read_arg_group(&arg, as, argc, error);
}

/* Checks that nothing follows the feature argument group. */
static int dmr_check_no_more_args(struct dm_arg_set *as, char **error)
{
	if (as->argc) {
		*error = "Too many arguments";
		return -EINVAL;
	}
	return 0;
}

/**
 * dmr_parse_secondary_features() - parse a secondary table's feature arguments
 * @as: the arguments after <chunk size>: [<#feature args> [<feature arg>]*]
 * @f: filled with the features on success
 * @error: set to a message for ti->error on failure
 *
 * The only feature is "low_water_mark <#free chunks>", so the group holds
 * two words at most.  Unknown or incomplete features and trailing arguments
 * are errors.
 *
 * Return: 0 on success, -EINVAL with @error set otherwise.
 */
int dmr_parse_secondary_features(struct dm_arg_set *as,
				 struct dmr_secondary_features *f,
				 char **error)
{
	unsigned int argc;
	const char *name;
	int r;

	memset(f, 0, sizeof(*f));
	r = dmr_read_feature_group(as, 2, &argc, error);
	if (r)
		return r;

	while (argc) {
		name = dm_shift_arg(as);
		argc--;
		if (strcmp(name, "low_water_mark")) {
			*error = "Unrecognised feature argument";
			return -EINVAL;
		}
		if (!argc) {
			*error = "Feature low_water_mark needs a value";
			return -EINVAL;
		}
		argc--;
		if (kstrtouint(dm_shift_arg(as), 10, &f->low_water_mark)) {
			*error = "Invalid low_water_mark: not a number";
			return -EINVAL;
		}
		f->has_low_water_mark = true;
	}

	return dmr_check_no_more_args(as, error);
}

/**
 * dmr_parse_no_features() - parse a feature group of a mode that has none
 * @as: the remaining table arguments: [<#feature args> [<feature arg>]*]
 * @error: set to a message for ti->error on failure
 *
 * An empty group ("0") or no group at all is accepted; any feature is
 * unrecognised.
 *
 * Return: 0 on success, -EINVAL with @error set otherwise.
 */
int dmr_parse_no_features(struct dm_arg_set *as, char **error)
{
	unsigned int argc;
	int r;

	r = dmr_read_feature_group(as, UINT_MAX, &argc, error);
	if (r)
		return r;
	if (argc) {
		*error = "Unrecognised feature argument";
		return -EINVAL;
	}
	return dmr_check_no_more_args(as, error);
}

static const char * const dmr_msg_names[] = {
	[DMR_MSG_CHECKPOINT] = "checkpoint",
	[DMR_MSG_STOP] = "stop",
	[DMR_MSG_FAILOVER] = "failover",
	[DMR_MSG_COMMIT_DEPTH] = "commit_depth",
};

/* The words a message takes after its name. */
static unsigned int dmr_msg_nr_args(enum dmr_msg msg)
{
	return msg == DMR_MSG_COMMIT_DEPTH ? 1 : 0;
}

/**
 * dmr_parse_message() - parse a message to a secondary device
 * @argc: number of words in the message, at least one
 * @argv: the words
 * @msg: set to the message on success
 * @value: set to the argument of commit_depth, from 1 to
 *         %DMR_COMMIT_DEPTH_MAX, on success
 * @error: set to a message for the kernel log on failure
 *
 * Return: 0 on success, -EINVAL with @error set otherwise.
 */
int dmr_parse_message(unsigned int argc, char **argv, enum dmr_msg *msg,
		      unsigned int *value, char **error)
{
	unsigned int i;

	if (!argc) {
		*error = "Empty message";
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(dmr_msg_names); i++) {
		if (strcmp(argv[0], dmr_msg_names[i]))
			continue;
		if (argc - 1 > dmr_msg_nr_args(i)) {
			*error = dmr_msg_nr_args(i) ?
				 "Message takes one argument" :
				 "Message takes no arguments";
			return -EINVAL;
		}
		if (argc - 1 < dmr_msg_nr_args(i)) {
			*error = "Message needs an argument";
			return -EINVAL;
		}
		if (i == DMR_MSG_COMMIT_DEPTH &&
		    (kstrtouint(argv[1], 10, value) || !*value ||
		     *value > DMR_COMMIT_DEPTH_MAX)) {
			*error = "Invalid commit_depth: expected 1 to 64 extents";
			return -EINVAL;
		}
		*msg = i;
		return 0;
	}
	*error = "Unrecognised message";
	return -EINVAL;
}

static const char * const dmr_state_names[] = {
	[DMR_STATE_RUNNING] = "running",
	[DMR_STATE_FAILOVER] = "failover",
	[DMR_STATE_FAILOVER_FAILED] = "failover_failed",
	[DMR_STATE_DONE] = "done",
};

/**
 * dmr_state_name() - the name of a state, as status reports it
 * @state: the state
 *
 * Return: the name, or "unknown" for a value out of range.
 */
const char *dmr_state_name(enum dmr_state state)
{
	if ((unsigned int)state >= ARRAY_SIZE(dmr_state_names))
		return "unknown";
	return dmr_state_names[state];
}

/**
 * dmr_msg_action() - what a message does in a state
 * @state: the session's state
 * @msg: the message
 *
 * QEMU's rules: a promoted secondary (failover, done) has nothing to
 * checkpoint, so checkpoint, stop and failover do nothing there; after a
 * failed failover the stores hold unmerged data, so only a retry of the
 * failover is allowed.  The commit depth may be set in any state.
 *
 * Return: the action.
 */
enum dmr_action dmr_msg_action(enum dmr_state state, enum dmr_msg msg)
{
	if (msg == DMR_MSG_COMMIT_DEPTH)
		return DMR_ACT_COMMIT_DEPTH;
	switch (state) {
	case DMR_STATE_RUNNING:
		if (msg == DMR_MSG_CHECKPOINT)
			return DMR_ACT_CHECKPOINT;
		if (msg == DMR_MSG_STOP)
			return DMR_ACT_STOP;
		return DMR_ACT_FAILOVER;
	case DMR_STATE_FAILOVER:
	case DMR_STATE_DONE:
		return DMR_ACT_NOTHING;
	case DMR_STATE_FAILOVER_FAILED:
		return msg == DMR_MSG_FAILOVER ? DMR_ACT_FAILOVER :
						 DMR_ACT_REFUSE;
	default:
		return DMR_ACT_REFUSE;
	}
}

/* ---------------------------------------------------------------------------
 * The loaded replication state of a session: its stores and data path.
 *
 * Chunk locking.  Chunks that are mapped in active (for top I/O) or in active
 * or hidden (for port writes) need no lock: a mapping never changes within an
 * epoch, and a checkpoint drains all I/O first.  Everything else goes through
 * the chunk's bucket, under its spinlock:
 *  - a job (a copy-up into active, a full-chunk write into active, or a port
 *    write's copy into hidden) holds its chunk busy; every later bio for the
 *    chunk waits on the job and is mapped again when the job ends, when the
 *    chunk is mapped;
 *  - a top read that goes to the secondary device counts as a reader of its
 *    bucket, and a port write may not start its copy while its bucket has
 *    readers, so no top read can see the secondary device half overwritten.
 */

#define DMR_COMMIT_PERIOD	HZ

/*
 * A job holds a chunk while its data is copied or written into a store: a
 * top write covering a whole chunk, a top write needing the rest of its chunk
 * (a copy-up), or a port write's copy of the old chunk into hidden.
 */
struct dmr_job {
	struct dmr_pending rec;		/* the record, once the data is in */
	struct hlist_node cell;		/* on its bucket's busy list */
	struct bio_list waiters;	/* bios for the chunk, meanwhile */
	struct llist_node done;		/* on core->done_jobs */
	struct dmr_core *core;
	struct dmr_store *store;
	struct bio *bio;
	struct dmr_map_entry *entry;
	struct dmr_job *run_next;	/* the next chunk of a run's bio */
	struct dmr_job *run_head;	/* a port run's first job, in the others */
	atomic_t run_left;		/* in a port run's first: jobs to commit */
	int run_err;			/* in a port run's first: its error */
};

/* The most a top bio over several chunks (a run) covers: 1 MiB. */
#define DMR_RUN_SECTORS		(SZ_1M >> SECTOR_SHIFT)

/* Per-bio data of the top and the port. */
struct dmr_bio {
	struct dmr_core *core;		/* set when counted in flight */
	struct dm_target *ti;
	struct dmr_job *job;		/* a full-chunk write's (or a run's first), until mapped */
	u32 chunk;			/* a reader's chunk */
	u8 flags;
};

#define DMR_PB_READER		BIT(0)	/* counted in its bucket's readers */
#define DMR_PB_PORT		BIT(1)	/* a port bio */
#define DMR_PB_COMMITTED	BIT(2)	/* a FUA write whose commit is done */

/**
 * dmr_core_name() - the name of the session's top device, for the log
 * @core: the session's loaded state
 *
 * Return: the top's major:minor when the stores were loaded.
 */
const char *dmr_core_name(struct dmr_core *core)
{
	return core->name;
}

static struct dmr_bio *dmr_pb(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct dmr_bio));
}

static sector_t dmr_bio_offset(struct bio *bio)
{
	return dm_target_offset(dmr_pb(bio)->ti, bio->bi_iter.bi_sector);
}

static u32 dmr_bio_chunk(struct dmr_core *core, struct bio *bio)
{
	return dmr_bio_offset(bio) >> core->chunk_shift;
}

/* The length of a chunk: the last one may be cut short by the target's end. */
static sector_t dmr_chunk_len(struct dmr_core *core, u32 chunk)
{
	sector_t start = (sector_t)chunk << core->chunk_shift;

	return min_t(sector_t, core->chunk_sectors, core->len - start);
}

static sector_t dmr_slot_sector(struct dmr_store *st, struct dmr_core *core,
				u32 slot)
{
	return st->layout.data_start + ((sector_t)slot << core->chunk_shift);
}

static void dmr_remap_store(struct dmr_core *core, struct bio *bio,
			    struct dmr_store *st, u32 slot)
{
	sector_t in_chunk = dmr_bio_offset(bio) & (core->chunk_sectors - 1);

	bio_set_dev(bio, st->bdev);
	bio->bi_iter.bi_sector = dmr_slot_sector(st, core, slot) + in_chunk;
}

static void dmr_remap_secondary(struct dmr_core *core, struct bio *bio)
{
	bio->bi_iter.bi_sector = dmr_bio_offset(bio);
	bio_set_dev(bio, core->secondary);
}

static void dmr_fail_bio(struct bio *bio, int err)
{
	bio->bi_status = errno_to_blk_status(err);
	bio_endio(bio);
}

/* ---- events and errors ---------------------------------------------------- */

static void dmr_event_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core, event_work);

	mutex_lock(&core->event_lock);
	if (core->ti)
		dm_table_event(core->ti->table);
	mutex_unlock(&core->event_lock);
}

/**
 * dmr_raise_event() - raise a dm event on the live top device
 * @core: the session's loaded state
 *
 * The event is raised by a worker, so any context may call this.
 */
void dmr_raise_event(struct dmr_core *core)
{
	queue_work(core->wq, &core->event_work);
}

/**
 * dmr_set_error() - record a replication error
 * @core: the session's loaded state
 * @err: a negative errno
 *
 * The first error since the last checkpoint is kept for status, logged, and
 * raises a dm event.
 */
void dmr_set_error(struct dmr_core *core, int err)
{
	if (!atomic_cmpxchg(&core->error, 0, -err)) {
		DMERR("%pg: replication error %d", core->secondary, err);
		dmr_raise_event(core);
	}
}

static void dmr_check_low_water(struct dmr_core *core, struct dmr_store *st)
{
	u32 free = st->layout.nr_slots - dmr_store_used(st);

	if (core->low_water_mark && free < core->low_water_mark &&
	    !atomic_xchg(&core->low_water_fired, 1))
		dmr_raise_event(core);
}

/* ---- in-flight accounting and the checkpoint gate ---------------------------- */

static void dmr_inflight_put(struct dmr_core *core)
{
	if (atomic_dec_and_test(&core->inflight) && READ_ONCE(core->frozen))
		wake_up(&core->drain_wait);
}

/* Counts @bio in flight when the gate is open; never parks it. */
static bool dmr_pass_gate(struct dmr_core *core, struct bio *bio)
{
	atomic_inc(&core->inflight);
	/* Pairs with dmr_freeze(): it sees our count or we its gate. */
	smp_mb__after_atomic();
	if (likely(!READ_ONCE(core->frozen))) {
		dmr_pb(bio)->core = core;
		return true;
	}
	dmr_inflight_put(core);
	return false;
}

/*
 * Counts @bio in flight, or parks it while a checkpoint drains.  Returns
 * false when parked: the bio is re-entered when the gate opens.
 */
static bool dmr_enter(struct dmr_core *core, struct bio *bio)
{
	for (;;) {
		if (likely(dmr_pass_gate(core, bio)))
			return true;

		spin_lock_irq(&core->lock);
		if (core->frozen) {
			bio_list_add(&core->frozen_bios, bio);
			spin_unlock_irq(&core->lock);
			return false;
		}
		spin_unlock_irq(&core->lock);
	}
}

/**
 * dmr_freeze() - close the gate and wait until nothing is in flight
 * @core: the session's loaded state
 *
 * New bios of the top and the port are parked until dmr_thaw().
 */
void dmr_freeze(struct dmr_core *core)
{
	spin_lock_irq(&core->lock);
	WRITE_ONCE(core->frozen, true);
	spin_unlock_irq(&core->lock);
	/* Pairs with dmr_enter(): we see its count or it sees the gate. */
	smp_mb();
	wait_event(core->drain_wait, !atomic_read(&core->inflight));
}

/**
 * dmr_thaw() - open the gate: parked bios are mapped by the worker
 * @core: the session's loaded state
 */
void dmr_thaw(struct dmr_core *core)
{
	spin_lock_irq(&core->lock);
	WRITE_ONCE(core->frozen, false);
	bio_list_merge(&core->deferred, &core->frozen_bios);
	bio_list_init(&core->frozen_bios);
	spin_unlock_irq(&core->lock);
	queue_work(core->wq, &core->defer_work);
}

/**
 * dmr_defer_bios() - have the worker map bios (again)
 * @core: the session's loaded state
 * @bios: the bios, counted in flight or not; emptied
 */
void dmr_defer_bios(struct dmr_core *core, struct bio_list *bios)
{
	unsigned long flags;

	if (bio_list_empty(bios))
		return;
	spin_lock_irqsave(&core->lock, flags);
	bio_list_merge(&core->deferred, bios);
	spin_unlock_irqrestore(&core->lock, flags);
	queue_work(core->wq, &core->defer_work);
}

/* ---- chunk buckets ----------------------------------------------------------------- */

/**
 * dmr_bucket() - the lock bucket of a chunk
 * @core: the session's loaded state
 * @chunk: the chunk
 *
 * Return: the bucket.
 */
struct dmr_bucket *dmr_bucket(struct dmr_core *core, u32 chunk)
{
	return &core->buckets[hash_32(chunk, ilog2(DMR_BUCKETS))];
}

static struct dmr_job *dmr_busy_job(struct dmr_bucket *b, u32 chunk)
{
	struct dmr_job *job;

	hlist_for_each_entry(job, &b->busy, cell)
		if (job->rec.chunk == chunk)
			return job;
	return NULL;
}

/* Ends a job's hold on its chunk; the bios that waited are mapped again. */
static void dmr_job_release(struct dmr_job *job)
{
	struct dmr_core *core = job->core;
	struct dmr_bucket *b = dmr_bucket(core, job->rec.chunk);
	struct bio_list waiters;
	unsigned long flags;

	spin_lock_irqsave(&b->lock, flags);
	hlist_del_init(&job->cell);
	waiters = job->waiters;
	bio_list_init(&job->waiters);
	spin_unlock_irqrestore(&b->lock, flags);

	dmr_defer_bios(core, &waiters);
}

static void dmr_reader_put(struct dmr_core *core, u32 chunk)
{
	struct dmr_bucket *b = dmr_bucket(core, chunk);
	struct bio_list waiters;
	unsigned long flags;
	bool last;

	bio_list_init(&waiters);
	spin_lock_irqsave(&b->lock, flags);
	last = !--b->readers;
	if (last) {
		waiters = b->wait_readers;
		bio_list_init(&b->wait_readers);
	}
	spin_unlock_irqrestore(&b->lock, flags);

	dmr_defer_bios(core, &waiters);
	/* A failover's extent may wait for the bucket's writers. */
	if (last)
		dmr_commit_writer_done(core);
}

static void dmr_job_free(struct dmr_job *job)
{
	dmr_store_free_entry(job->entry);
	mempool_free(job, &job->core->job_pool);
}

static void dmr_free_job_list(struct llist_node *list)
{
	struct dmr_job *job, *tmp;

	llist_for_each_entry_safe(job, tmp, list, rec.node)
		dmr_job_free(job);
}

/* Inserts a finished job's mapping; the job's entry now belongs to the map. */
static int dmr_job_map(struct dmr_job *job)
{
	struct dmr_core *core = job->core;
	u32 chunk = job->rec.chunk, slot;
	int r;

	job->entry->chunk = chunk;
	job->entry->slot = job->rec.slot;
	/* Hidden maps a chunk only after its record is committed. */
	if (job->store == &core->hidden)
		job->entry->slot |= DMR_SLOT_DURABLE;
	r = dmr_store_insert(job->store, job->entry);
	if (r)
		return r;
	job->rec.entry = job->entry;
	job->entry = NULL;

	if (job->store == &core->active) {
		if (dmr_store_lookup(&core->hidden, chunk, &slot))
			atomic_dec(&core->hidden_only);
	} else if (!dmr_store_lookup(&core->active, chunk, &slot)) {
		atomic_inc(&core->hidden_only);
	}
	return 0;
}

/* ---- commits -------------------------------------------------------------------- */

/**
 * dmr_active_commit() - commit active, and complete the flushes waiting for it
 * @core: the session's loaded state
 *
 * Once the session fails over, top writes also go in place into hidden and
 * straight to the secondary device: those are flushed too.
 *
 * Return: 0 or the commit's error, which the waiting bios get too.
 */
int dmr_active_commit(struct dmr_core *core)
{
	struct bio_list waiters;
	struct llist_node *done;
	struct bio *bio;
	int err;

	spin_lock_irq(&core->lock);
	waiters = core->commit_waiters;
	bio_list_init(&core->commit_waiters);
	spin_unlock_irq(&core->lock);

	done = dmr_store_commit(&core->active, &err);
	dmr_free_job_list(done);
	if (!err && READ_ONCE(core->state) != DMR_STATE_RUNNING) {
		err = blkdev_issue_flush(core->hidden.bdev);
		if (!err)
			err = blkdev_issue_flush(core->secondary);
	}
	if (err)
		dmr_set_error(core, err);

	while ((bio = bio_list_pop(&waiters))) {
		dmr_pb(bio)->flags |= DMR_PB_COMMITTED;
		if (err)
			bio->bi_status = errno_to_blk_status(err);
		bio_endio(bio);
	}
	return err;
}

static void dmr_active_commit_work(struct work_struct *w)
{
	dmr_active_commit(container_of(w, struct dmr_core, active_commit_work));
}

/*
 * While the session runs, top writes go to active only: when active has no
 * record to commit, a FLUSH of the top is a FLUSH of active's device, and a
 * FUA write was made durable by its own FUA.
 */
static bool dmr_active_clean(struct dmr_core *core, enum dmr_state state)
{
	return state == DMR_STATE_RUNNING && dmr_store_clean(&core->active);
}

/*
 * Otherwise top flushes and FUA writes complete after the next commit of
 * active.
 */
static void dmr_wait_commit(struct dmr_core *core, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&core->lock, flags);
	bio_list_add(&core->commit_waiters, bio);
	spin_unlock_irqrestore(&core->lock, flags);
	queue_work(core->wq, &core->active_commit_work);
}

static void dmr_periodic_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(to_delayed_work(w),
					     struct dmr_core, periodic_work);

	if (!llist_empty(&core->active.pending))
		queue_work(core->wq, &core->active_commit_work);
	queue_delayed_work(core->wq, &core->periodic_work, DMR_COMMIT_PERIOD);
}

/*
 * A port write's copy is in hidden and committed: map it, then write.  A run
 * writes once all its chunks are mapped, in whatever order their records
 * were committed.
 */
static void dmr_cow_committed(struct dmr_job *job, int err)
{
	struct dmr_job *head = job->run_head ?: job;
	struct dmr_core *core = job->core;
	struct bio *bio = job->bio;

	if (!err)
		err = dmr_job_map(job);
	dmr_job_release(job);
	if (err)
		cmpxchg(&head->run_err, 0, err);
	if (job != head)
		dmr_job_free(job);
	if (!atomic_dec_and_test(&head->run_left))
		return;
	err = head->run_err;
	dmr_job_free(head);
	if (err) {
		dmr_set_error(core, err);
		dmr_fail_bio(bio, err);
		return;
	}
	dmr_remap_secondary(core, bio);
	submit_bio_noacct(bio);
}

static void dmr_hidden_commit_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core,
					     hidden_commit_work);
	struct dmr_job *job, *tmp;
	struct llist_node *done;
	int err;

	done = dmr_store_commit(&core->hidden, &err);
	done = llist_reverse_order(done);
	llist_for_each_entry_safe(job, tmp, done, rec.node)
		dmr_cow_committed(job, err);
}

/* ---- jobs ------------------------------------------------------------------------- */

static struct dmr_job *dmr_job_alloc(struct dmr_core *core, gfp_t gfp)
{
	struct dmr_job *job = mempool_alloc(&core->job_pool, gfp);

	if (!job)
		return NULL;
	memset(job, 0, sizeof(*job));
	job->core = core;
	INIT_HLIST_NODE(&job->cell);
	bio_list_init(&job->waiters);
	atomic_set(&job->run_left, 1);
	job->entry = dmr_store_alloc_entry(gfp);
	if (!job->entry) {
		mempool_free(job, &core->job_pool);
		return NULL;
	}
	return job;
}

/* A job failed before its data was in: fail its bio, free the chunk. */
static void dmr_job_fail(struct dmr_job *job, int err)
{
	struct bio *bio = job->bio;

	dmr_job_release(job);
	dmr_job_free(job);
	dmr_fail_bio(bio, err);
}

static void dmr_copy_up_done(int read_err, unsigned long write_err,
			     void *context)
{
	struct dmr_job *job = context;
	struct dmr_core *core = job->core;
	struct bio *bio = job->bio;
	int r;

	if (read_err || write_err) {
		dmr_job_fail(job, -EIO);
		return;
	}
	r = dmr_job_map(job);
	if (r) {
		dmr_job_fail(job, r);
		return;
	}
	dmr_remap_store(core, bio, &core->active, job->rec.slot);
	dmr_job_release(job);
	/*
	 * The chunk's old content is in: its record may be committed now.
	 * A commit frees the job, so this is the job's last use here.
	 */
	llist_add(&job->rec.node, &core->active.pending);
	submit_bio_noacct(bio);
}

static void dmr_run_abandon(struct dmr_job *job);

/* The copy of a port write's chunks (one, or a run's) is in hidden. */
static void dmr_cow_copied(int read_err, unsigned long write_err,
			   void *context)
{
	struct dmr_job *job = context, *next;
	struct dmr_core *core = job->core;
	struct bio *bio = job->bio;

	if (read_err || write_err) {
		dmr_set_error(core, -EIO);
		dmr_run_abandon(job);
		dmr_fail_bio(bio, -EIO);
		return;
	}
	for (; job; job = next) {
		/* Once queued, a job may be committed and freed at once. */
		next = job->run_next;
		llist_add(&job->rec.node, &core->hidden.pending);
	}
	queue_work(core->wq, &core->hidden_commit_work);
}

/* Copies @job's chunk, or its run's chunks, into the job's slots. */
static void dmr_copy(struct dmr_core *core, struct dmr_job *job,
		     struct block_device *from_bdev, sector_t from,
		     dm_kcopyd_notify_fn fn)
{
	struct dmr_store *st = job->store;
	sector_t len = 0;
	struct dmr_job *j;
	struct dm_io_region src = {
		.bdev = from_bdev,
		.sector = from,
	};
	struct dm_io_region dst = {
		.bdev = st->bdev,
		.sector = dmr_slot_sector(st, core, job->rec.slot),
	};

	for (j = job; j; j = j->run_next)
		len += dmr_chunk_len(core, j->rec.chunk);
	src.count = len;
	dst.count = len;
	dm_kcopyd_copy(core->kc, &src, 1, &dst, 0, fn, job);
}

/*
 * A write of whole chunks is in: map its chunks, queue their records, then
 * let the bio complete.  A chunk that fails to map fails the bio; so do the
 * run's chunks after it.
 */
static void dmr_done_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core, done_work);
	struct dmr_job *job, *tmp, *next;
	struct llist_node *list;

	list = llist_reverse_order(llist_del_all(&core->done_jobs));
	llist_for_each_entry_safe(job, tmp, list, done) {
		struct bio *bio = job->bio;

		dmr_pb(bio)->job = NULL;
		for (; job; job = next) {
			int r = bio->bi_status ? -EIO : dmr_job_map(job);

			next = job->run_next;
			dmr_job_release(job);
			if (r) {
				dmr_job_free(job);
				if (!bio->bi_status)
					bio->bi_status = errno_to_blk_status(r);
			} else {
				llist_add(&job->rec.node, &core->active.pending);
			}
		}
		bio_endio(bio);
	}
}

/*
 * A port write needs no copy into hidden when hidden has the chunk, or when
 * active has it durably: the top never reads the secondary device for it
 * again in this epoch, not even after a crash.  (An active mapping whose
 * record is not committed yet would be lost in a crash, and the top would
 * then read the port's write.)
 */
static bool dmr_port_needs_no_copy(struct dmr_core *core, u32 chunk)
{
	u32 slot;

	return dmr_store_lookup(&core->hidden, chunk, &slot) ||
	       dmr_store_lookup_durable(&core->active, chunk);
}

/*
 * Takes @chunk for @job under its bucket lock, or queues @bio behind the
 * chunk's current holder (or, for the port, behind the bucket's readers).
 * Under the same lock it rechecks whether the chunk got mapped meanwhile:
 * then the bio needs no job.
 */
enum dmr_claim { DMR_CLAIMED, DMR_QUEUED, DMR_MAPPED };

static enum dmr_claim dmr_claim_chunk(struct dmr_core *core,
				      struct dmr_job *job, struct bio *bio,
				      u32 chunk, bool port)
{
	struct dmr_bucket *b = dmr_bucket(core, chunk);
	struct dmr_job *holder;
	enum dmr_claim ret = DMR_CLAIMED;
	u32 slot;

	spin_lock_irq(&b->lock);
	holder = dmr_busy_job(b, chunk);
	if (holder) {
		bio_list_add(&holder->waiters, bio);
		ret = DMR_QUEUED;
	} else if (port ? dmr_port_needs_no_copy(core, chunk) :
			  dmr_store_lookup(&core->active, chunk, &slot)) {
		ret = DMR_MAPPED;
	} else if (port && b->readers) {
		bio_list_add(&b->wait_readers, bio);
		ret = DMR_QUEUED;
	} else {
		job->rec.chunk = chunk;
		job->bio = bio;
		hlist_add_head(&job->cell, &b->busy);
	}
	spin_unlock_irq(&b->lock);
	return ret;
}

/*
 * Makes a job for @chunk and claims the chunk with it.  Returns the job, or
 * NULL with @claim saying why: queued behind the chunk's holder, mapped
 * meanwhile, or (DMR_CLAIMED) no memory, the bio failed with ENOMEM.
 */
static struct dmr_job *dmr_new_job(struct dmr_core *core, struct bio *bio,
				   u32 chunk, bool port, enum dmr_claim *claim)
{
	struct dmr_job *job = dmr_job_alloc(core, GFP_NOIO);

	*claim = DMR_CLAIMED;
	if (!job) {
		if (port)
			dmr_set_error(core, -ENOMEM);
		dmr_fail_bio(bio, -ENOMEM);
		return NULL;
	}
	*claim = dmr_claim_chunk(core, job, bio, chunk, port);
	if (*claim == DMR_CLAIMED)
		return job;
	dmr_job_free(job);
	return NULL;
}

static int dmr_start_job(struct dmr_core *core, struct dmr_job *job,
			 struct dmr_store *st)
{
	int r;

	job->store = st;
	r = dmr_store_alloc_slot(st, &job->rec.slot);
	if (!r)
		dmr_check_low_water(core, st);
	return r;
}

/* ---- the top device's data path -------------------------------------------- */

static int dmr_top_read(struct dmr_core *core, struct bio *bio, u32 chunk)
{
	struct dmr_bucket *b;
	struct dmr_job *holder;
	u32 slot;

	if (dmr_store_lookup(&core->active, chunk, &slot)) {
		dmr_remap_store(core, bio, &core->active, slot);
		return DM_MAPIO_REMAPPED;
	}
	if (dmr_store_lookup(&core->hidden, chunk, &slot)) {
		dmr_remap_store(core, bio, &core->hidden, slot);
		return DM_MAPIO_REMAPPED;
	}

	b = dmr_bucket(core, chunk);
	spin_lock_irq(&b->lock);
	holder = dmr_busy_job(b, chunk);
	if (holder) {
		bio_list_add(&holder->waiters, bio);
		spin_unlock_irq(&b->lock);
		return DM_MAPIO_SUBMITTED;
	}
	/* Mapped since the lookups above?  Map again, outside the lock. */
	if (dmr_store_lookup(&core->active, chunk, &slot) ||
	    dmr_store_lookup(&core->hidden, chunk, &slot)) {
		spin_unlock_irq(&b->lock);
		return dmr_top_read(core, bio, chunk);
	}
	b->readers++;
	spin_unlock_irq(&b->lock);

	dmr_pb(bio)->flags |= DMR_PB_READER;
	dmr_pb(bio)->chunk = chunk;
	dmr_remap_secondary(core, bio);
	return DM_MAPIO_REMAPPED;
}

static bool dmr_covers_chunk(struct dmr_core *core, struct bio *bio, u32 chunk)
{
	return !(dmr_bio_offset(bio) & (core->chunk_sectors - 1)) &&
	       bio_sectors(bio) == dmr_chunk_len(core, chunk);
}

static int dmr_top_write_new(struct dmr_core *core, struct bio *bio, u32 chunk)
{
	enum dmr_claim claim;
	struct dmr_job *job;
	u32 slot;
	int r;

	job = dmr_new_job(core, bio, chunk, false, &claim);
	switch (claim) {
	case DMR_QUEUED:
		return DM_MAPIO_SUBMITTED;
	case DMR_MAPPED:
		if (WARN_ON_ONCE(!dmr_store_lookup(&core->active, chunk, &slot))) {
			dmr_fail_bio(bio, -EIO);
			return DM_MAPIO_SUBMITTED;
		}
		dmr_remap_store(core, bio, &core->active, slot);
		return DM_MAPIO_REMAPPED;
	case DMR_CLAIMED:
		if (!job)
			return DM_MAPIO_SUBMITTED;
		break;
	}

	r = dmr_start_job(core, job, &core->active);
	if (r) {
		dmr_job_fail(job, r);
		return DM_MAPIO_SUBMITTED;
	}

	if (dmr_covers_chunk(core, bio, chunk)) {
		/* Nothing to copy: write, and map at completion (end_io). */
		dmr_pb(bio)->job = job;
		dmr_remap_store(core, bio, &core->active, job->rec.slot);
		return DM_MAPIO_REMAPPED;
	}

	if (dmr_store_lookup(&core->hidden, chunk, &slot))
		dmr_copy(core, job, core->hidden.bdev,
			 dmr_slot_sector(&core->hidden, core, slot),
			 dmr_copy_up_done);
	else
		dmr_copy(core, job, core->secondary,
			 (sector_t)chunk << core->chunk_shift,
			 dmr_copy_up_done);
	return DM_MAPIO_SUBMITTED;
}

/* Counts a write in place in its bucket, for the merge to wait for. */
static void dmr_mark_writer(struct bio *bio, u32 chunk)
{
	dmr_pb(bio)->flags |= DMR_PB_READER;
	dmr_pb(bio)->chunk = chunk;
}

/*
 * The top while failing over, or after a failed failover: chunks merged
 * durably are the secondary device's; see dm-replication-commit.c.
 */
static int dmr_top_failover(struct dmr_core *core, struct bio *bio, u32 chunk,
			    enum dmr_state state)
{
	u64 durable = dmr_commit_durable(core);
	u32 aslot = 0, hslot = 0;
	bool in_active, in_hidden;
	enum dmr_route route;

	in_active = dmr_store_lookup(&core->active, chunk, &aslot);
	in_hidden = dmr_store_lookup(&core->hidden, chunk, &hslot);

	if (bio_op(bio) == REQ_OP_READ) {
		if (state == DMR_STATE_FAILOVER_FAILED && chunk >= durable)
			return dmr_top_read(core, bio, chunk);
		route = dmr_route_read(chunk, durable, in_active, in_hidden);
	} else if (bio_op(bio) == REQ_OP_WRITE) {
		route = dmr_commit_route_write(core, bio, chunk, in_active,
					       in_hidden);
	} else {
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}

	switch (route) {
	case DMR_ROUTE_SECONDARY:
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	case DMR_ROUTE_ACTIVE:
		if (bio_op(bio) == REQ_OP_WRITE)
			dmr_mark_writer(bio, chunk);
		dmr_remap_store(core, bio, &core->active, aslot);
		return DM_MAPIO_REMAPPED;
	case DMR_ROUTE_HIDDEN:
		if (bio_op(bio) == REQ_OP_WRITE)
			dmr_mark_writer(bio, chunk);
		dmr_remap_store(core, bio, &core->hidden, hslot);
		return DM_MAPIO_REMAPPED;
	case DMR_ROUTE_COPY_UP:
		return dmr_top_write_new(core, bio, chunk);
	case DMR_ROUTE_WAIT:
		break;
	}
	return DM_MAPIO_SUBMITTED;
}

static int dmr_top_process(struct dmr_core *core, struct bio *bio)
{
	enum dmr_state state = READ_ONCE(core->state);
	u32 chunk, slot;

	if (state == DMR_STATE_DONE) {
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	}
	if (op_is_flush(bio->bi_opf) && !bio_sectors(bio)) {
		if (dmr_active_clean(core, state)) {
			bio_set_dev(bio, core->active.bdev);
			return DM_MAPIO_REMAPPED;
		}
		dmr_wait_commit(core, bio);
		return DM_MAPIO_SUBMITTED;
	}

	chunk = dmr_bio_chunk(core, bio);
	if (state != DMR_STATE_RUNNING)
		return dmr_top_failover(core, bio, chunk, state);
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		return dmr_top_read(core, bio, chunk);
	case REQ_OP_WRITE:
		if (dmr_store_lookup(&core->active, chunk, &slot)) {
			dmr_remap_store(core, bio, &core->active, slot);
			return DM_MAPIO_REMAPPED;
		}
		return dmr_top_write_new(core, bio, chunk);
	default:
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}
}

/* ---- runs: top bios over several chunks ------------------------------------- */

/* The sectors from a bio's start to the end of its first chunk. */
static sector_t dmr_first_chunk_left(struct dmr_core *core,
				     struct dm_target *ti, struct bio *bio)
{
	sector_t off = dm_target_offset(ti, bio->bi_iter.bi_sector);

	return core->chunk_sectors - (off & (core->chunk_sectors - 1));
}

/* Does the bio go past the end of its first chunk? */
static bool dmr_spans_chunks(struct dmr_core *core, struct dm_target *ti,
			     struct bio *bio)
{
	return bio_sectors(bio) > dmr_first_chunk_left(core, ti, bio);
}

/* The first and the last chunk of a bio. */
static void dmr_bio_chunks(struct dmr_core *core, struct bio *bio,
			   u32 *first, u32 *last)
{
	sector_t off = dmr_bio_offset(bio);

	*first = off >> core->chunk_shift;
	*last = (off + bio_sectors(bio) - 1) >> core->chunk_shift;
}

/* A run whose chunks active maps in consecutive slots goes there whole. */
static bool dmr_run_mapped(struct dmr_core *core, struct bio *bio)
{
	u32 first, last, chunk, slot0, slot;

	dmr_bio_chunks(core, bio, &first, &last);
	if (!dmr_store_lookup(&core->active, first, &slot0))
		return false;
	for (chunk = first + 1; chunk <= last; chunk++)
		if (!dmr_store_lookup(&core->active, chunk, &slot) ||
		    slot != slot0 + (chunk - first))
			return false;
	dmr_remap_store(core, bio, &core->active, slot0);
	return true;
}

/*
 * Takes @chunk for @job when nobody holds it and it still needs a job: for
 * the top, active does not map it; for the port, it needs a copy and no top
 * read of the secondary device is in flight in its bucket.
 */
static bool dmr_try_claim(struct dmr_core *core, struct dmr_job *job,
			  struct bio *bio, u32 chunk, bool port)
{
	struct dmr_bucket *b = dmr_bucket(core, chunk);
	bool claimed = false;
	u32 slot;

	spin_lock_irq(&b->lock);
	if (!dmr_busy_job(b, chunk) &&
	    (port ? !dmr_port_needs_no_copy(core, chunk) && !b->readers :
		    !dmr_store_lookup(&core->active, chunk, &slot))) {
		job->rec.chunk = chunk;
		job->bio = bio;
		hlist_add_head(&job->cell, &b->busy);
		claimed = true;
	}
	spin_unlock_irq(&b->lock);
	return claimed;
}

static void dmr_run_abandon(struct dmr_job *job)
{
	struct dmr_job *next;

	for (; job; job = next) {
		next = job->run_next;
		if (!hlist_unhashed(&job->cell))
			dmr_job_release(job);
		dmr_job_free(job);
	}
}

/*
 * Makes a job for every chunk of @bio and claims them all, then gives them
 * consecutive slots of @st: the run's chunks.  Nothing here sleeps: the jobs
 * come without waiting, or the bio takes the chunk by chunk path.
 *
 * Return: the run's first job, or NULL with nothing held.
 */
static struct dmr_job *dmr_run_claim(struct dmr_core *core, struct bio *bio,
				     struct dmr_store *st, bool port)
{
	struct dmr_job *head = NULL, **tail = &head, *job;
	u32 first, last, chunk, slot;

	dmr_bio_chunks(core, bio, &first, &last);
	if (last >= core->nr_chunks)
		return NULL;
	for (chunk = first; chunk <= last; chunk++) {
		job = dmr_job_alloc(core, GFP_NOWAIT | __GFP_NOWARN);
		if (!job)
			goto abandon;
		*tail = job;
		tail = &job->run_next;
		if (!dmr_try_claim(core, job, bio, chunk, port))
			goto abandon;
	}
	if (dmr_store_alloc_slots(st, last - first + 1, &slot))
		goto abandon;
	dmr_check_low_water(core, st);

	for (job = head; job; job = job->run_next) {
		job->store = st;
		job->rec.slot = slot++;
		if (job != head)
			job->run_head = head;
	}
	atomic_set(&head->run_left, last - first + 1);
	return head;

abandon:
	dmr_run_abandon(head);
	return NULL;
}

/*
 * A top run of whole chunks that active does not map and nobody holds is
 * written whole into consecutive slots.  Its chunks are mapped when it is in
 * (dmr_done_work()), as a single full-chunk write's is.
 */
static bool dmr_run_new(struct dmr_core *core, struct bio *bio)
{
	sector_t off = dmr_bio_offset(bio), end = off + bio_sectors(bio);
	sector_t mask = core->chunk_sectors - 1;
	struct dmr_job *head;

	if ((off & mask) || ((end & mask) && end != core->len))
		return false;
	head = dmr_run_claim(core, bio, &core->active, false);
	if (!head)
		return false;
	dmr_pb(bio)->job = head;
	dmr_remap_store(core, bio, &core->active, head->rec.slot);
	return true;
}

/* Ends the count of a bio that leaves the target's hands unprocessed. */
static void dmr_leave(struct dmr_core *core, struct bio *bio)
{
	dmr_pb(bio)->core = NULL;
	dmr_inflight_put(core);
}

/* Sets up a new bio's per-bio data. */
static void dmr_init_pb(struct dm_target *ti, struct bio *bio, u8 flags)
{
	struct dmr_bio *pb = dmr_pb(bio);

	memset(pb, 0, sizeof(*pb));
	pb->ti = ti;
	pb->flags = flags;
}

/* Sets up a new bio and counts it in flight when the gate is open. */
static bool dmr_try_enter(struct dmr_core *core, struct dm_target *ti,
			  struct bio *bio, u8 flags)
{
	dmr_init_pb(ti, bio, flags);
	return dmr_pass_gate(core, bio);
}

/*
 * Maps a top bio over several chunks whole, when it can: after a failover,
 * when active maps all its chunks in a row, or when it writes whole chunks
 * that are new to active.  Returns false, with the bio not counted in
 * flight, for the caller to cut it at its first chunk's end: a bio that
 * waits (for a chunk, a commit or a checkpoint) is always one chunk's.
 */
static bool dmr_top_map_run(struct dmr_core *core, struct dm_target *ti,
			    struct bio *bio)
{
	enum dmr_state state;

	if (bio_op(bio) != REQ_OP_READ && bio_op(bio) != REQ_OP_WRITE)
		return false;
	if (!dmr_try_enter(core, ti, bio, 0))
		return false;
	state = READ_ONCE(core->state);
	if (state == DMR_STATE_DONE) {
		dmr_remap_secondary(core, bio);
		return true;
	}
	if (state == DMR_STATE_RUNNING &&
	    (dmr_run_mapped(core, bio) ||
	     (bio_op(bio) == REQ_OP_WRITE && dmr_run_new(core, bio))))
		return true;
	dmr_leave(core, bio);
	return false;
}

/* ---- the port's data path -------------------------------------------------- */

/*
 * A port write over several chunks goes whole to the secondary device when
 * none of its chunks needs a copy.  When all do, and none is held, one copy
 * takes them into consecutive slots of hidden, their records are committed,
 * and then the bio goes.  Otherwise it returns DMR_NO_RUN, with the bio not
 * counted in flight, for the caller to cut it at its first chunk's end.
 */
#define DMR_NO_RUN	(-1)

static int dmr_port_map_run(struct dmr_core *core, struct dm_target *ti,
			    struct bio *bio)
{
	struct dmr_job *head;
	u32 first, last, chunk;

	if (!dmr_try_enter(core, ti, bio, DMR_PB_PORT))
		return DMR_NO_RUN;
	if (READ_ONCE(core->state) != DMR_STATE_RUNNING)
		goto cut;
	dmr_bio_chunks(core, bio, &first, &last);
	for (chunk = first; chunk <= last; chunk++)
		if (chunk >= core->nr_chunks ||
		    !dmr_port_needs_no_copy(core, chunk))
			break;
	if (chunk > last) {
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	}
	if (chunk != first)
		goto cut;
	head = dmr_run_claim(core, bio, &core->hidden, true);
	if (!head)
		goto cut;
	dmr_copy(core, head, core->secondary,
		 (sector_t)first << core->chunk_shift, dmr_cow_copied);
	return DM_MAPIO_SUBMITTED;
cut:
	dmr_leave(core, bio);
	return DMR_NO_RUN;
}

static int dmr_port_write_new(struct dmr_core *core, struct bio *bio,
			      u32 chunk)
{
	enum dmr_claim claim;
	struct dmr_job *job;
	int r;

	job = dmr_new_job(core, bio, chunk, true, &claim);
	switch (claim) {
	case DMR_QUEUED:
		return DM_MAPIO_SUBMITTED;
	case DMR_MAPPED:
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	case DMR_CLAIMED:
		if (!job)
			return DM_MAPIO_SUBMITTED;
		break;
	}

	r = dmr_start_job(core, job, &core->hidden);
	if (r) {
		dmr_set_error(core, r);
		dmr_job_fail(job, r);
		return DM_MAPIO_SUBMITTED;
	}
	dmr_copy(core, job, core->secondary, (sector_t)chunk << core->chunk_shift,
		 dmr_cow_copied);
	return DM_MAPIO_SUBMITTED;
}

static int dmr_port_process(struct dmr_core *core, struct bio *bio)
{
	u32 chunk;

	if (bio_op(bio) != REQ_OP_WRITE || !bio_sectors(bio)) {
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	}
	if (READ_ONCE(core->state) != DMR_STATE_RUNNING) {
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}

	chunk = dmr_bio_chunk(core, bio);
	if (chunk >= core->nr_chunks || dmr_port_needs_no_copy(core, chunk)) {
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	}
	return dmr_port_write_new(core, bio, chunk);
}

static int dmr_process(struct dmr_core *core, struct bio *bio)
{
	if (dmr_pb(bio)->flags & DMR_PB_PORT)
		return dmr_port_process(core, bio);
	return dmr_top_process(core, bio);
}

/*
 * Maps the bios that waited: for a chunk, for readers, or for a checkpoint.
 * Once a bio is counted in flight, processing never returns DM_MAPIO_KILL:
 * dm core would end it without calling end_io, and the count would leak.
 */
static void dmr_defer_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core, defer_work);
	struct bio_list bios;
	struct bio *bio;

	spin_lock_irq(&core->lock);
	bios = core->deferred;
	bio_list_init(&core->deferred);
	spin_unlock_irq(&core->lock);

	while ((bio = bio_list_pop(&bios))) {
		if (!dmr_pb(bio)->core && !dmr_enter(core, bio))
			continue;
		if (dmr_process(core, bio) == DM_MAPIO_REMAPPED)
			submit_bio_noacct(bio);
	}
}

/* Sets up a new bio's per-bio data and counts it in flight (or parks it). */
static bool dmr_start_bio(struct dmr_core *core, struct dm_target *ti,
			  struct bio *bio, u8 flags)
{
	dmr_init_pb(ti, bio, flags);
	return dmr_enter(core, bio);
}

static int dmr_end_io(struct dm_target *ti, struct bio *bio,
		      blk_status_t *error)
{
	struct dmr_bio *pb = dmr_pb(bio);
	struct dmr_core *core = pb->core;

	if (!core)
		return DM_ENDIO_DONE;

	if (pb->job) {
		llist_add(&pb->job->done, &core->done_jobs);
		queue_work(core->wq, &core->done_work);
		return DM_ENDIO_INCOMPLETE;
	}
	if (!(pb->flags & (DMR_PB_PORT | DMR_PB_COMMITTED)) && !*error &&
	    bio_op(bio) == REQ_OP_WRITE && (bio->bi_opf & REQ_FUA) &&
	    READ_ONCE(core->state) != DMR_STATE_DONE &&
	    !dmr_active_clean(core, READ_ONCE(core->state))) {
		dmr_wait_commit(core, bio);
		return DM_ENDIO_INCOMPLETE;
	}
	if (pb->flags & DMR_PB_READER) {
		pb->flags &= ~DMR_PB_READER;
		dmr_reader_put(core, pb->chunk);
	}
	pb->core = NULL;
	dmr_inflight_put(core);
	return DM_ENDIO_DONE;
}

/* ---- loading and unloading a session's stores --------------------------------- */

static void dmr_core_header(struct dmr_core *core, struct dmr_store *st,
			    struct dmr_header *h)
{
	memset(h, 0, sizeof(*h));
	h->role = st->role;
	h->seq = core->seq;
	h->epoch = core->epoch;
	memcpy(h->uuid, core->uuid, DMR_UUID_SIZE);
	h->state = core->state;
	h->chunk_sectors = core->chunk_sectors;
	h->secondary_sectors = core->len;
	h->layout = st->layout;
	h->commit_cursor = core->merge.cursor;
}

/**
 * dmr_core_write_header() - write a store's header from the session's state
 * @core: the session's loaded state; the caller serialises header writes
 * @st: the store
 *
 * Return: 0 or a negative errno.
 */
int dmr_core_write_header(struct dmr_core *core, struct dmr_store *st)
{
	struct dmr_header h;

	dmr_core_header(core, st, &h);
	return dmr_write_header(core->io, st->bdev, &h, true);
}

static void dmr_active_header_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core,
					     active_header_work);
	int r;

	r = dmr_write_header(core->io, core->active.bdev, &core->active_header,
			     false);
	if (r)
		dmr_set_error(core, r);
}

/**
 * dmr_wait_active_header() - wait for a new epoch's header of active
 * @core: the session's loaded state
 *
 * Called before the session's generation changes again, so that active's
 * header writes land in order.
 */
void dmr_wait_active_header(struct dmr_core *core)
{
	flush_work(&core->active_header_work);
}

/*
 * Writes the header of a new epoch, which gives the session @state before
 * the core takes it.  It empties the store: no PREFLUSH.
 */
static int dmr_core_write_epoch_header(struct dmr_core *core,
				       struct dmr_store *st,
				       enum dmr_state state)
{
	struct dmr_header h;

	dmr_core_header(core, st, &h);
	h.state = state;
	return dmr_write_header(core->io, st->bdev, &h, false);
}

/*
 * Reads one store's header and checks it against the table.  Returns 0 for
 * a valid header, 1 for a blank store, or a negative errno with @error set.
 */
static int dmr_read_store_header(struct dmr_secondary *s,
				 struct dm_io_client *io, struct dm_dev *dev,
				 enum dmr_role role, void *area,
				 struct dmr_header *h, char **error)
{
	int r, rc;

	r = dmr_read_header_area(io, dev->bdev, area);
	if (r) {
		*error = role == DMR_ROLE_HIDDEN ?
			 "Cannot read the hidden store's header" :
			 "Cannot read the active store's header";
		return r;
	}
	rc = dmr_header_pick(area, h, error);
	if (rc)
		return rc;
	return dmr_header_check(h, role, s->chunk_sectors, s->ti->len,
				bdev_nr_sectors(dev->bdev), error);
}

/* Reads both stores' headers and checks them against the table. */
static int dmr_read_headers(struct dmr_secondary *s, struct dm_io_client *io,
			    struct dmr_header *hh, struct dmr_header *ah,
			    enum dmr_load_action *action, char **error)
{
	void *area;
	int hrc, arc, r;

	area = kmalloc(DMR_HEADER_SECTORS << SECTOR_SHIFT, GFP_KERNEL);
	if (!area) {
		*error = "Cannot allocate header buffer";
		return -ENOMEM;
	}

	hrc = dmr_read_store_header(s, io, s->hidden, DMR_ROLE_HIDDEN, area,
				    hh, error);
	arc = hrc < 0 ? hrc :
	      dmr_read_store_header(s, io, s->active, DMR_ROLE_ACTIVE, area,
				    ah, error);
	if (arc < 0) {
		r = arc;
		goto out;
	}

	r = dmr_headers_reconcile(hrc, hh, arc, ah, action, error);
	if (!r && hrc)
		hh->seq = 0;
	if (!r && arc)
		ah->seq = 0;
out:
	kfree(area);
	return r;
}

static void dmr_core_free(struct dmr_core *core)
{
	if (core->wq)
		destroy_workqueue(core->wq);
	dmr_store_close(&core->active);
	dmr_store_close(&core->hidden);
	dmr_store_exit(&core->active);
	dmr_store_exit(&core->hidden);
	if (core->kc)
		dm_kcopyd_client_destroy(core->kc);
	if (core->io)
		dm_io_client_destroy(core->io);
	mempool_exit(&core->job_pool);
	kvfree(core->buckets);
	kfree(core);
}

static struct dmr_core *dmr_core_alloc(struct dmr_secondary *s)
{
	struct dmr_core *core = kzalloc(sizeof(*core), GFP_KERNEL);
	unsigned int i;

	if (!core)
		return NULL;
	core->secondary = s->secondary->bdev;
	core->len = s->ti->len;
	core->chunk_sectors = s->chunk_sectors;
	core->chunk_shift = ilog2(s->chunk_sectors);
	core->nr_chunks = DIV_ROUND_UP_ULL(core->len, core->chunk_sectors);
	mutex_init(&core->state_lock);
	mutex_init(&core->event_lock);
	init_waitqueue_head(&core->drain_wait);
	spin_lock_init(&core->lock);
	bio_list_init(&core->deferred);
	bio_list_init(&core->frozen_bios);
	bio_list_init(&core->commit_waiters);
	init_llist_head(&core->done_jobs);
	INIT_WORK(&core->defer_work, dmr_defer_work);
	INIT_WORK(&core->active_commit_work, dmr_active_commit_work);
	INIT_WORK(&core->hidden_commit_work, dmr_hidden_commit_work);
	INIT_WORK(&core->done_work, dmr_done_work);
	INIT_WORK(&core->active_header_work, dmr_active_header_work);
	INIT_WORK(&core->event_work, dmr_event_work);
	INIT_DELAYED_WORK(&core->periodic_work, dmr_periodic_work);
	dmr_merge_init(core);
	strscpy(core->name, dm_table_device_name(s->ti->table),
		sizeof(core->name));

	core->buckets = kvcalloc(DMR_BUCKETS, sizeof(*core->buckets),
				 GFP_KERNEL);
	if (!core->buckets)
		goto bad;
	for (i = 0; i < DMR_BUCKETS; i++) {
		spin_lock_init(&core->buckets[i].lock);
		INIT_HLIST_HEAD(&core->buckets[i].busy);
		bio_list_init(&core->buckets[i].wait_readers);
	}
	if (mempool_init_kmalloc_pool(&core->job_pool, 64,
				      sizeof(struct dmr_job)))
		goto bad;
	core->io = dm_io_client_create();
	if (IS_ERR(core->io)) {
		core->io = NULL;
		goto bad;
	}
	core->kc = dm_kcopyd_client_create(NULL);
	if (IS_ERR(core->kc)) {
		core->kc = NULL;
		goto bad;
	}
	core->wq = alloc_workqueue("dmr-%s", WQ_MEM_RECLAIM, 0,
				   dm_table_device_name(s->ti->table));
	if (!core->wq)
		goto bad;
	return core;
bad:
	dmr_core_free(core);
	return NULL;
}

/* Sets up the session's shared header fields from what the disks hold. */
static int dmr_core_adopt(struct dmr_core *core, enum dmr_load_action action,
			  const struct dmr_header *hh,
			  const struct dmr_header *ah)
{
	const struct dmr_header *newer = hh->seq >= ah->seq ? hh : ah;
	int r = 0;

	if (action == DMR_LOAD_FORMAT) {
		core->seq = 1;
		core->epoch = get_random_u64() | 1;
		core->state = DMR_STATE_RUNNING;
		get_random_bytes(core->uuid, DMR_UUID_SIZE);
	} else {
		core->seq = newer->seq;
		core->epoch = newer->epoch;
		core->state = newer->state;
		memcpy(core->uuid, newer->uuid, DMR_UUID_SIZE);
		core->merge.durable = newer->commit_cursor;
		core->merge.cursor = newer->commit_cursor;
	}

	/* Bring a blank or lagging store to the session's generation. */
	if (hh->seq != core->seq)
		r = dmr_core_write_header(core, &core->hidden);
	if (!r && ah->seq != core->seq)
		r = dmr_core_write_header(core, &core->active);
	return r;
}

/* A resumed store keeps the layout its header gives; a new one gets one. */
static int dmr_store_setup(struct dmr_core *core, struct dmr_store *st,
			   const char *name, enum dmr_role role,
			   struct block_device *bdev, const struct dmr_header *h)
{
	struct dmr_layout l = h->layout;
	int r;

	if (!h->seq)
		dmr_layout_init(&l, bdev_nr_sectors(bdev), core->chunk_sectors);
	r = dmr_store_init(st, name, role, &l);
	if (!r)
		r = dmr_store_open(st, bdev);
	return r;
}

/* Loads the session's stores, formatting them when both are blank. */
static struct dmr_core *dmr_core_load(struct dmr_secondary *s, char **error)
{
	struct dmr_header hh, ah;
	enum dmr_load_action action;
	struct dmr_core *core;
	u32 hidden_only = 0, unused = 0;
	int r;

	core = dmr_core_alloc(s);
	if (!core) {
		*error = "Cannot allocate the replication state";
		return ERR_PTR(-ENOMEM);
	}

	r = dmr_read_headers(s, core->io, &hh, &ah, &action, error);
	if (r)
		goto bad;
	r = dmr_store_setup(core, &core->hidden, "hidden", DMR_ROLE_HIDDEN,
			    s->hidden->bdev, &hh);
	if (!r)
		r = dmr_store_setup(core, &core->active, "active",
				    DMR_ROLE_ACTIVE, s->active->bdev, &ah);
	if (r) {
		*error = "Cannot set up the stores";
		goto bad;
	}

	r = dmr_core_adopt(core, action, &hh, &ah);
	if (r) {
		*error = "Cannot write a store header";
		goto bad;
	}
	r = dmr_store_load(&core->active, core->epoch, core->nr_chunks, NULL,
			   &unused, error);
	if (!r)
		r = dmr_store_load(&core->hidden, core->epoch, core->nr_chunks,
				   &core->active, &hidden_only, error);
	if (r)
		goto bad;
	atomic_set(&core->hidden_only, hidden_only);
	r = dmr_commit_load(core);
	if (r) {
		*error = "Cannot plan the failover's commit";
		goto bad;
	}

	queue_delayed_work(core->wq, &core->periodic_work, DMR_COMMIT_PERIOD);
	return core;
bad:
	dmr_core_free(core);
	return ERR_PTR(r);
}

/* Unloads the stores; nothing may be in flight on the top any more. */
static void dmr_core_unload(struct dmr_core *core)
{
	dmr_merge_exit(core);
	dmr_freeze(core);
	cancel_delayed_work_sync(&core->periodic_work);
	flush_workqueue(core->wq);
	dmr_active_commit(core);
	dmr_free_job_list(llist_del_all(&core->active.pending));
	dmr_core_free(core);
}

/**
 * dmr_new_epoch() - move the session to a new epoch and a state, durably
 * @core: the session's loaded state; the caller holds its state_lock
 * @state: the state of the new epoch
 *
 * A checkpoint, stop, or the end of a failover: drain the top and the port,
 * flush the secondary device, write hidden's header with FUA, empty the
 * maps, let the parked bios go; a worker then writes active's header.
 * Hidden's write is the commit point: on load the newer generation wins, and
 * a lagging active header is brought up to it.
 *
 * Return: 0, or a negative errno; before the commit point nothing changed.
 * A failed write of active's header is recorded as a replication error.
 */
int dmr_new_epoch(struct dmr_core *core, enum dmr_state state)
{
	struct llist_node *discarded;
	u64 old_seq = core->seq, old_epoch = core->epoch;
	enum dmr_state old_state = core->state;
	int r;

	r = dmr_store_prepare_reset(&core->hidden);
	if (!r)
		r = dmr_store_prepare_reset(&core->active);
	if (r)
		return r;

	dmr_wait_active_header(core);
	dmr_freeze(core);

	/*
	 * The new epoch drops hidden's old copies: what the port wrote must
	 * be durable first, or a crash would show the older content.  (At
	 * the end of a failover the merge has flushed already.)
	 */
	r = old_state == DMR_STATE_RUNNING ?
	    blkdev_issue_flush(core->secondary) : 0;
	if (r) {
		dmr_thaw(core);
		return r;
	}

	core->seq++;
	core->epoch = core->epoch + 1 ? core->epoch + 1 : 1;
	r = dmr_core_write_epoch_header(core, &core->hidden, state);
	if (r) {
		/* Not durable: keep the old epoch. */
		core->seq = old_seq;
		core->epoch = old_epoch;
		dmr_thaw(core);
		return r;
	}
	dmr_store_reset(&core->hidden, core->epoch, &discarded);
	dmr_free_job_list(discarded);
	dmr_store_reset(&core->active, core->epoch, &discarded);
	dmr_free_job_list(discarded);
	atomic_set(&core->hidden_only, 0);
	atomic_set(&core->error, 0);
	atomic_set(&core->low_water_fired, 0);
	core->nr_checkpoints++;
	/* Status shows the new state only with the stores emptied. */
	WRITE_ONCE(core->state, state);
	dmr_core_header(core, &core->active, &core->active_header);
	dmr_thaw(core);

	/*
	 * Durable from the hidden header on, whatever the active store's
	 * write gives; a load brings a lagging header up to date.  Written
	 * by a worker, it stalls neither the top nor the message.
	 */
	queue_work(core->wq, &core->active_header_work);
	if (state != old_state)
		dmr_raise_event(core);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Sessions: how a port finds the secondary over the same secondary device.
 */

static LIST_HEAD(dmr_sessions);
static DEFINE_MUTEX(dmr_sessions_lock);

static struct dmr_session *dmr_session_find(dev_t dev)
{
	struct dmr_session *ses;

	lockdep_assert_held(&dmr_sessions_lock);
	list_for_each_entry(ses, &dmr_sessions, list)
		if (ses->secondary_dev == dev)
			return ses;
	return NULL;
}

/* Drops a table's hold on a session; frees it when no table holds it. */
static void dmr_session_put(struct dmr_session *ses)
{
	lockdep_assert_held(&dmr_sessions_lock);
	if (!ses->nr_top)
		ses->top_md = NULL;
	if (!ses->nr_port)
		ses->port_md = NULL;
	if (ses->nr_top || ses->nr_port)
		return;
	list_del(&ses->list);
	kfree(ses);
}

/*
 * A secondary table joins the session of its secondary device, making it
 * when there is none.  Only one mapped device may be the secondary of a
 * session; a reload of that device's table joins the same session, with the
 * same stores while they are loaded.
 */
static int dmr_session_attach_top(struct dmr_secondary *s)
{
	struct dm_target *ti = s->ti;
	struct mapped_device *md = dm_table_get_md(ti->table);
	dev_t dev = s->secondary->bdev->bd_dev;
	struct dmr_session *ses;
	int r = 0;

	mutex_lock(&dmr_sessions_lock);
	ses = dmr_session_find(dev);
	if (ses && ses->top_md && ses->top_md != md) {
		ti->error = "Secondary device is already used by another replication secondary";
		r = -EBUSY;
		goto out;
	}
	if (ses && ses->port_md == md) {
		ti->error = "Device is the port of this secondary device";
		r = -EINVAL;
		goto out;
	}
	if (ses && rcu_access_pointer(ses->core) &&
	    (ses->hidden_dev != s->hidden->bdev->bd_dev ||
	     ses->active_dev != s->active->bdev->bd_dev ||
	     ses->chunk_sectors != s->chunk_sectors)) {
		ti->error = "Cannot change the stores or chunk size of a loaded session";
		r = -EINVAL;
		goto out;
	}
	if (!ses) {
		ses = kzalloc(sizeof(*ses), GFP_KERNEL);
		if (!ses) {
			ti->error = "Cannot allocate replication session";
			r = -ENOMEM;
			goto out;
		}
		ses->secondary_dev = dev;
		list_add(&ses->list, &dmr_sessions);
	}
	ses->top_md = md;
	ses->nr_top++;
	s->session = ses;
out:
	mutex_unlock(&dmr_sessions_lock);
	return r;
}

/*
 * The session's state: the loaded one, or before the first resume the one
 * the top's constructor read from the headers.
 */
static enum dmr_state dmr_session_state(struct dmr_session *ses)
{
	struct dmr_core *core;

	core = rcu_dereference_protected(ses->core,
					 lockdep_is_held(&dmr_sessions_lock));
	return core ? READ_ONCE(core->state) : ses->disk_state;
}

/* A port table joins the session of a loaded secondary over its device. */
static int dmr_session_attach_port(struct dmr_port *p)
{
	struct dm_target *ti = p->ti;
	struct mapped_device *md = dm_table_get_md(ti->table);
	struct dmr_session *ses;
	int r = 0;

	mutex_lock(&dmr_sessions_lock);
	ses = dmr_session_find(p->secondary->bdev->bd_dev);
	if (!ses || !ses->nr_top) {
		ti->error = "No replication secondary is loaded over this secondary device";
		r = -ENODEV;
		goto out;
	}
	if (ses->top_md == md) {
		ti->error = "Port and secondary must be different devices";
		r = -EINVAL;
		goto out;
	}
	if (ses->port_md && ses->port_md != md) {
		ti->error = "Secondary device already has a port";
		r = -EBUSY;
		goto out;
	}
	if (dmr_session_state(ses) != DMR_STATE_RUNNING) {
		/* The split-brain guard: see Documentation, "Failover". */
		ti->error =
			"Session failed over: zero the first 4 KiB of both stores to start anew";
		r = -EPERM;
		goto out;
	}
	ses->port_md = md;
	ses->nr_port++;
	p->session = ses;
out:
	mutex_unlock(&dmr_sessions_lock);
	return r;
}

/* Returns the session's loaded state to unload when this was its last top. */
static struct dmr_core *dmr_session_detach_top(struct dmr_session *ses)
{
	struct dmr_core *core = NULL;

	mutex_lock(&dmr_sessions_lock);
	if (!--ses->nr_top) {
		core = rcu_dereference_protected(ses->core,
						 lockdep_is_held(&dmr_sessions_lock));
		RCU_INIT_POINTER(ses->core, NULL);
	}
	dmr_session_put(ses);
	mutex_unlock(&dmr_sessions_lock);

	if (core)
		synchronize_rcu();	/* port bios see no core, or count */
	return core;
}

static void dmr_session_detach_port(struct dmr_session *ses)
{
	mutex_lock(&dmr_sessions_lock);
	ses->nr_port--;
	dmr_session_put(ses);
	mutex_unlock(&dmr_sessions_lock);
}

/* ---------------------------------------------------------------------------
 * Helpers shared by the modes.
 */

static int dmr_get_dev(struct dm_target *ti, struct dm_arg_set *as,
		       struct dm_dev **dev, char *error)
{
	int r;

	r = dm_get_device(ti, dm_shift_arg(as), dm_table_get_mode(ti->table),
			  dev);
	if (r)
		ti->error = error;
	return r;
}

static bool dmr_same_dev(struct dm_dev *a, struct dm_dev *b)
{
	return a->bdev->bd_dev == b->bdev->bd_dev;
}

static sector_t dmr_dev_sectors(struct dm_dev *dev)
{
	return bdev_nr_sectors(dev->bdev);
}

static int dmr_check_len(struct dm_target *ti, struct dm_dev *dev,
			 char *error)
{
	if (ti->len > dmr_dev_sectors(dev)) {
		ti->error = error;
		return -EINVAL;
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * Secondary mode.
 */

static struct dmr_secondary *to_secondary(struct dm_target *ti)
{
	return container_of(ti->private, struct dmr_secondary, base);
}

/* The loaded state, while this table may do I/O (after its preresume). */
static struct dmr_core *dmr_secondary_core(struct dmr_secondary *s)
{
	return rcu_dereference_protected(s->session->core, true);
}

static const struct dmr_mode_ops dmr_secondary_ops;

static void dmr_secondary_put_devs(struct dm_target *ti,
				   struct dmr_secondary *s)
{
	if (s->active)
		dm_put_device(ti, s->active);
	if (s->hidden)
		dm_put_device(ti, s->hidden);
	if (s->secondary)
		dm_put_device(ti, s->secondary);
}

static int dmr_secondary_get_devs(struct dm_target *ti,
				  struct dmr_secondary *s,
				  struct dm_arg_set *as)
{
	int r;

	r = dmr_get_dev(ti, as, &s->secondary, "Error opening secondary device");
	if (r)
		return r;
	r = dmr_get_dev(ti, as, &s->hidden, "Error opening hidden device");
	if (r)
		return r;
	r = dmr_get_dev(ti, as, &s->active, "Error opening active device");
	if (r)
		return r;

	if (dmr_same_dev(s->hidden, s->secondary)) {
		ti->error = "Hidden device must differ from the secondary device";
		return -EINVAL;
	}
	if (dmr_same_dev(s->active, s->secondary)) {
		ti->error = "Active device must differ from the secondary device";
		return -EINVAL;
	}
	if (dmr_same_dev(s->active, s->hidden)) {
		ti->error = "Active device must differ from the hidden device";
		return -EINVAL;
	}
	return dmr_check_len(ti, s->secondary,
			     "Target length exceeds the secondary device");
}

static int dmr_secondary_check_stores(struct dm_target *ti,
				      struct dmr_secondary *s)
{
	if (DIV_ROUND_UP_ULL(ti->len, s->chunk_sectors) > U32_MAX) {
		ti->error = "Target has more than 2^32 chunks: use a larger chunk size";
		return -EINVAL;
	}
	if (!dmr_store_capacity(dmr_dev_sectors(s->hidden), s->chunk_sectors)) {
		ti->error = "Hidden device is too small to hold a chunk";
		return -EINVAL;
	}
	if (!dmr_store_capacity(dmr_dev_sectors(s->active), s->chunk_sectors)) {
		ti->error = "Active device is too small to hold a chunk";
		return -EINVAL;
	}
	return 0;
}

/*
 * Checks the stores' headers, reading only: the first table of a session
 * refuses bad stores here, with ti->error.  A reload of a loaded session
 * reads nothing (its stores are in use) and the loading itself, which may
 * write, waits for preresume.
 */
static int dmr_secondary_check_headers(struct dm_target *ti,
				       struct dmr_secondary *s)
{
	struct dmr_header hh, ah;
	enum dmr_load_action action;
	struct dm_io_client *io;
	int r;

	if (rcu_access_pointer(s->session->core))
		return 0;
	io = dm_io_client_create();
	if (IS_ERR(io)) {
		ti->error = "Cannot create a dm-io client";
		return PTR_ERR(io);
	}
	r = dmr_read_headers(s, io, &hh, &ah, &action, &ti->error);
	dm_io_client_destroy(io);
	if (r)
		return r;
	mutex_lock(&dmr_sessions_lock);
	s->session->disk_state = action == DMR_LOAD_RESUME ?
		(hh.seq >= ah.seq ? hh.state : ah.state) : DMR_STATE_RUNNING;
	mutex_unlock(&dmr_sessions_lock);
	return 0;
}

static int dmr_secondary_ctr(struct dm_target *ti, struct dm_arg_set *as)
{
	struct dmr_secondary *s;
	int r;

	if (as->argc < 4) {
		ti->error =
			"Not enough arguments: need <secondary> <hidden> <active> <chunk size>";
		return -EINVAL;
	}

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s) {
		ti->error = "Cannot allocate secondary context";
		return -ENOMEM;
	}
	s->base.ops = &dmr_secondary_ops;
	s->ti = ti;

	r = dmr_secondary_get_devs(ti, s, as);
	if (r)
		goto bad;
	r = dmr_parse_chunk_size(dm_shift_arg(as), &s->chunk_sectors,
				 &ti->error);
	if (r)
		goto bad;
	r = dmr_parse_secondary_features(as, &s->features, &ti->error);
	if (r)
		goto bad;
	r = dmr_secondary_check_stores(ti, s);
	if (r)
		goto bad;

	/* Bios over several chunks are cut in map, unless they go whole. */
	r = dm_set_target_max_io_len(ti, max_t(sector_t, s->chunk_sectors,
					       DMR_RUN_SECTORS));
	if (r) {
		ti->error = "Cannot set the maximum I/O length";
		goto bad;
	}

	r = dmr_session_attach_top(s);
	if (r)
		goto bad;
	r = dmr_secondary_check_headers(ti, s);
	if (r)
		goto bad_detach;

	ti->num_flush_bios = 1;
	/*
	 * The stores' records are the top's own volatile cache: flushes and
	 * FUA must reach the target to commit them, even over devices that
	 * have no write cache (the block layer would drop them otherwise).
	 */
	ti->flush_supported = true;
	ti->per_io_data_size = sizeof(struct dmr_bio);
	ti->private = &s->base;
	return 0;

bad_detach:
	WARN_ON_ONCE(dmr_session_detach_top(s->session));
bad:
	dmr_secondary_put_devs(ti, s);
	kfree(s);
	return r;
}

static void dmr_secondary_dtr(struct dm_target *ti)
{
	struct dmr_secondary *s = to_secondary(ti);
	struct dmr_core *core = dmr_secondary_core(s);
	struct dmr_core *last;

	if (core) {
		mutex_lock(&core->event_lock);
		if (core->ti == ti)
			core->ti = NULL;
		mutex_unlock(&core->event_lock);
	}
	last = dmr_session_detach_top(s->session);
	if (last)
		dmr_core_unload(last);
	dmr_secondary_put_devs(ti, s);
	kfree(s);
}

static int dmr_secondary_preresume(struct dm_target *ti)
{
	struct dmr_secondary *s = to_secondary(ti);
	struct dmr_session *ses = s->session;
	struct dmr_core *core;
	char *error;

	mutex_lock(&dmr_sessions_lock);
	core = rcu_dereference_protected(ses->core,
					 lockdep_is_held(&dmr_sessions_lock));
	if (!core) {
		core = dmr_core_load(s, &error);
		if (IS_ERR(core)) {
			mutex_unlock(&dmr_sessions_lock);
			DMERR("%s: cannot load the stores: %s",
			      dm_table_device_name(ti->table), error);
			return PTR_ERR(core);
		}
		ses->hidden_dev = s->hidden->bdev->bd_dev;
		ses->active_dev = s->active->bdev->bd_dev;
		ses->chunk_sectors = s->chunk_sectors;
		rcu_assign_pointer(ses->core, core);
	}
	mutex_unlock(&dmr_sessions_lock);

	core->low_water_mark = s->features.has_low_water_mark ?
			       s->features.low_water_mark : 0;
	mutex_lock(&core->event_lock);
	core->ti = ti;
	mutex_unlock(&core->event_lock);
	dmr_commit_resume(core);
	return 0;
}

/*
 * Suspend and reload lose nothing: commit what completed.  A failover's
 * merge pauses until the next resume, with its progress durable.
 */
static void dmr_secondary_postsuspend(struct dm_target *ti)
{
	struct dmr_core *core = dmr_secondary_core(to_secondary(ti));

	if (core) {
		dmr_active_commit(core);
		dmr_commit_pause(core);
	}
}

static int dmr_secondary_map(struct dm_target *ti, struct bio *bio)
{
	struct dmr_core *core = dmr_secondary_core(to_secondary(ti));

	if (unlikely(!core))
		return DM_MAPIO_KILL;
	if (dmr_spans_chunks(core, ti, bio)) {
		if (dmr_top_map_run(core, ti, bio))
			return DM_MAPIO_REMAPPED;
		dm_accept_partial_bio(bio, dmr_first_chunk_left(core, ti, bio));
	}
	if (!dmr_start_bio(core, ti, bio, 0))
		return DM_MAPIO_SUBMITTED;
	return dmr_process(core, bio);
}

static void dmr_secondary_status_info(struct dm_target *ti, char *result,
				      unsigned int maxlen)
{
	struct dmr_secondary *s = to_secondary(ti);
	struct dmr_core *core = dmr_secondary_core(s);
	enum dmr_state state;
	unsigned int sz = 0;
	u32 to_commit;

	if (!core) {
		DMEMIT("secondary %s 0 0/%llu 0/%llu 0 0",
		       dmr_state_name(s->session->disk_state),
		       (unsigned long long)dmr_store_capacity(dmr_dev_sectors(s->active),
							      s->chunk_sectors),
		       (unsigned long long)dmr_store_capacity(dmr_dev_sectors(s->hidden),
							      s->chunk_sectors));
		return;
	}
	/*
	 * A state change (a new epoch, a failed merge) holds the state lock
	 * while it empties the stores and turns the state: under it, status
	 * sees one side of it, never the middle.  Holders only wait for I/O
	 * in flight, never for a worker that a suspend stops.
	 */
	mutex_lock(&core->state_lock);
	state = READ_ONCE(core->state);
	if (state == DMR_STATE_RUNNING)
		to_commit = atomic_read(&core->active.nr_mapped) +
			    atomic_read(&core->hidden_only);
	else if (state == DMR_STATE_DONE)
		to_commit = 0;
	else
		to_commit = dmr_commit_remaining(core);
	DMEMIT("secondary %s %d %u/%llu %u/%llu %u %u",
	       dmr_state_name(state), atomic_read(&core->error),
	       dmr_store_used(&core->active),
	       (unsigned long long)core->active.layout.nr_slots,
	       dmr_store_used(&core->hidden),
	       (unsigned long long)core->hidden.layout.nr_slots,
	       READ_ONCE(core->nr_checkpoints), to_commit);
	mutex_unlock(&core->state_lock);
}

static void dmr_secondary_status_table(struct dm_target *ti, char *result,
				       unsigned int maxlen)
{
	struct dmr_secondary *s = to_secondary(ti);
	unsigned int sz = 0;

	DMEMIT("secondary %s %s %s %llu", s->secondary->name, s->hidden->name,
	       s->active->name, (unsigned long long)s->chunk_sectors);
	if (s->features.has_low_water_mark)
		DMEMIT(" 2 low_water_mark %u", s->features.low_water_mark);
	else
		DMEMIT(" 0");
}

static int dmr_secondary_message(struct dm_target *ti, unsigned int argc,
				 char **argv)
{
	struct dmr_secondary *s = to_secondary(ti);
	const char *name = dm_table_device_name(ti->table);
	struct dmr_core *core = dmr_secondary_core(s);
	unsigned int value = 0;
	enum dmr_msg msg;
	char *error;
	int r;

	r = dmr_parse_message(argc, argv, &msg, &value, &error);
	if (r) {
		DMERR("%s: %s: %s", name, error, argv[0]);
		return r;
	}
	if (!core) {
		DMERR("%s: %s: the stores are not loaded (resume the device first)",
		      name, argv[0]);
		return -EINVAL;
	}

	mutex_lock(&core->state_lock);
	switch (dmr_msg_action(core->state, msg)) {
	case DMR_ACT_NOTHING:
		r = 0;
		break;
	case DMR_ACT_CHECKPOINT:
		r = dmr_new_epoch(core, core->state);
		break;
	case DMR_ACT_STOP:
		r = dmr_new_epoch(core, DMR_STATE_DONE);
		break;
	case DMR_ACT_FAILOVER:
		r = dmr_commit_start(core);
		break;
	case DMR_ACT_COMMIT_DEPTH:
		r = dmr_commit_set_depth(core, value);
		break;
	case DMR_ACT_REFUSE:
		DMERR("%s: %s is not allowed in state %s", name, argv[0],
		      dmr_state_name(core->state));
		r = -EINVAL;
		break;
	}
	mutex_unlock(&core->state_lock);
	if (r && r != -EINVAL)
		DMERR("%s: %s failed: %d", name, argv[0], r);
	return r;
}

static int dmr_secondary_iterate_devices(struct dm_target *ti,
					 iterate_devices_callout_fn fn,
					 void *data)
{
	struct dmr_secondary *s = to_secondary(ti);
	int r;

	r = fn(ti, s->secondary, 0, ti->len, data);
	if (!r)
		r = fn(ti, s->hidden, 0, dmr_dev_sectors(s->hidden), data);
	if (!r)
		r = fn(ti, s->active, 0, dmr_dev_sectors(s->active), data);
	return r;
}

/*
 * dm cuts a bio at the queue's max_sectors as well as at max_io_len: make it
 * a multiple of the chunk, or a long write would reach map() in pieces that
 * start mid-chunk and could never go whole as a run.
 */
static void dmr_secondary_io_hints(struct dm_target *ti,
				   struct queue_limits *limits)
{
	unsigned int chunk = to_secondary(ti)->chunk_sectors;

	if (limits->max_hw_sectors >= chunk)
		limits->max_hw_sectors = rounddown(limits->max_hw_sectors, chunk);
	if (limits->max_sectors >= chunk)
		limits->max_sectors = rounddown(limits->max_sectors, chunk);
}

static const struct dmr_mode_ops dmr_secondary_ops = {
	.name = "secondary",
	.ctr = dmr_secondary_ctr,
	.dtr = dmr_secondary_dtr,
	.map = dmr_secondary_map,
	.end_io = dmr_end_io,
	.preresume = dmr_secondary_preresume,
	.postsuspend = dmr_secondary_postsuspend,
	.status_info = dmr_secondary_status_info,
	.status_table = dmr_secondary_status_table,
	.message = dmr_secondary_message,
	.iterate_devices = dmr_secondary_iterate_devices,
	.io_hints = dmr_secondary_io_hints,
};

static int dmr_no_message(struct dm_target *ti, unsigned int argc,
			  char **argv)
{
	DMERR("%s: %s mode accepts no messages: %s",
	      dm_table_device_name(ti->table), dmr_ops(ti)->name, argv[0]);
	return -EINVAL;
}

/* ---------------------------------------------------------------------------
 * Port mode.
 */

static struct dmr_port *to_port(struct dm_target *ti)
{
	return container_of(ti->private, struct dmr_port, base);
}

static const struct dmr_mode_ops dmr_port_ops;

static int dmr_port_ctr(struct dm_target *ti, struct dm_arg_set *as)
{
	struct dmr_port *p;
	int r;

	if (as->argc != 1) {
		ti->error = as->argc ? "Too many arguments: port takes only <secondary>" :
				       "Not enough arguments: need <secondary>";
		return -EINVAL;
	}

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p) {
		ti->error = "Cannot allocate port context";
		return -ENOMEM;
	}
	p->base.ops = &dmr_port_ops;
	p->ti = ti;

	r = dmr_get_dev(ti, as, &p->secondary, "Error opening secondary device");
	if (r)
		goto bad_free;
	r = dmr_check_len(ti, p->secondary,
			  "Target length exceeds the secondary device");
	if (r)
		goto bad;
	r = dmr_session_attach_port(p);
	if (r)
		goto bad;

	ti->num_flush_bios = 1;
	ti->per_io_data_size = sizeof(struct dmr_bio);
	ti->private = &p->base;
	return 0;

bad:
	dm_put_device(ti, p->secondary);
bad_free:
	kfree(p);
	return r;
}

static void dmr_port_dtr(struct dm_target *ti)
{
	struct dmr_port *p = to_port(ti);

	dmr_session_detach_port(p->session);
	dm_put_device(ti, p->secondary);
	kfree(p);
}

/*
 * The port finds the session's loaded state under RCU and counts its bio in
 * flight before it leaves the read-side section, so the state outlives it.
 * Without loaded stores, reads pass and writes fail.
 */
static int dmr_port_map(struct dm_target *ti, struct bio *bio)
{
	struct dmr_port *p = to_port(ti);
	struct dmr_core *core;
	bool entered = false;

	rcu_read_lock();
	core = rcu_dereference(p->session->core);
	/* Its chunk size is the top's, whatever it was when the port came. */
	if (core && bio_op(bio) == REQ_OP_WRITE &&
	    dmr_spans_chunks(core, ti, bio)) {
		int r = dmr_port_map_run(core, ti, bio);

		if (r != DMR_NO_RUN) {
			rcu_read_unlock();
			return r;
		}
		dm_accept_partial_bio(bio, dmr_first_chunk_left(core, ti, bio));
	}
	if (core)
		entered = dmr_start_bio(core, ti, bio, DMR_PB_PORT);
	rcu_read_unlock();
	/* Counted in flight, the core stays while the bio is processed. */
	if (core)
		return entered ? dmr_process(core, bio) : DM_MAPIO_SUBMITTED;

	memset(dmr_pb(bio), 0, sizeof(struct dmr_bio));
	if (bio_op(bio) == REQ_OP_WRITE && bio_sectors(bio))
		return DM_MAPIO_KILL;
	bio_set_dev(bio, p->secondary->bdev);
	bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
}

static void dmr_port_status_info(struct dm_target *ti, char *result,
				 unsigned int maxlen)
{
	struct dmr_port *p = to_port(ti);
	enum dmr_state state = DMR_STATE_RUNNING;
	struct dmr_core *core;
	u32 copied = 0;
	unsigned int sz = 0;

	rcu_read_lock();
	core = rcu_dereference(p->session->core);
	if (core) {
		state = READ_ONCE(core->state);
		copied = dmr_store_used(&core->hidden);
	}
	rcu_read_unlock();

	DMEMIT("port %s %u", core ? dmr_state_name(state) : "unloaded", copied);
}

static void dmr_port_status_table(struct dm_target *ti, char *result,
				  unsigned int maxlen)
{
	struct dmr_port *p = to_port(ti);
	unsigned int sz = 0;

	DMEMIT("port %s", p->secondary->name);
}

static int dmr_port_iterate_devices(struct dm_target *ti,
				    iterate_devices_callout_fn fn, void *data)
{
	struct dmr_port *p = to_port(ti);

	return fn(ti, p->secondary, 0, ti->len, data);
}

static const struct dmr_mode_ops dmr_port_ops = {
	.name = "port",
	.ctr = dmr_port_ctr,
	.dtr = dmr_port_dtr,
	.map = dmr_port_map,
	.end_io = dmr_end_io,
	.status_info = dmr_port_status_info,
	.status_table = dmr_port_status_table,
	.message = dmr_no_message,
	.iterate_devices = dmr_port_iterate_devices,
};

/* ---------------------------------------------------------------------------
 * The target type: dispatch to the mode.
 */

static const struct dmr_mode_ops * const dmr_modes[] = {
	[DMR_MODE_SECONDARY] = &dmr_secondary_ops,
	[DMR_MODE_PRIMARY] = &dmr_primary_ops,
	[DMR_MODE_PORT] = &dmr_port_ops,
};

static int replication_ctr(struct dm_target *ti, unsigned int argc,
			   char **argv)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	enum dmr_mode mode;
	int r;

	r = dmr_parse_mode(dm_shift_arg(&as), &mode, &ti->error);
	if (r)
		return r;
	return dmr_modes[mode]->ctr(ti, &as);
}

static void replication_dtr(struct dm_target *ti)
{
	dmr_ops(ti)->dtr(ti);
}

static int replication_map(struct dm_target *ti, struct bio *bio)
{
	return dmr_ops(ti)->map(ti, bio);
}

static int replication_end_io(struct dm_target *ti, struct bio *bio,
			      blk_status_t *error)
{
	const struct dmr_mode_ops *ops = dmr_ops(ti);

	return ops->end_io ? ops->end_io(ti, bio, error) : DM_ENDIO_DONE;
}

static int replication_preresume(struct dm_target *ti)
{
	const struct dmr_mode_ops *ops = dmr_ops(ti);

	return ops->preresume ? ops->preresume(ti) : 0;
}

static void replication_postsuspend(struct dm_target *ti)
{
	const struct dmr_mode_ops *ops = dmr_ops(ti);

	if (ops->postsuspend)
		ops->postsuspend(ti);
}

static void replication_status(struct dm_target *ti, status_type_t type,
			       unsigned int status_flags, char *result,
			       unsigned int maxlen)
{
	const struct dmr_mode_ops *ops = dmr_ops(ti);
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		ops->status_info(ti, result, maxlen);
		break;
	case STATUSTYPE_TABLE:
		ops->status_table(ti, result, maxlen);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",mode=%s;", ops->name);
		break;
	}
}

static int replication_message(struct dm_target *ti, unsigned int argc,
			       char **argv, char *result, unsigned int maxlen)
{
	return dmr_ops(ti)->message(ti, argc, argv);
}

static int replication_iterate_devices(struct dm_target *ti,
				       iterate_devices_callout_fn fn,
				       void *data)
{
	return dmr_ops(ti)->iterate_devices(ti, fn, data);
}

static void replication_io_hints(struct dm_target *ti,
				 struct queue_limits *limits)
{
	const struct dmr_mode_ops *ops = dmr_ops(ti);

	if (ops->io_hints)
		ops->io_hints(ti, limits);
}

static struct target_type replication_target = {
	.name = "replication",
	.version = { 0, 3, 0 },
	.module = THIS_MODULE,
	.ctr = replication_ctr,
	.dtr = replication_dtr,
	.map = replication_map,
	.end_io = replication_end_io,
	.preresume = replication_preresume,
	.postsuspend = replication_postsuspend,
	.status = replication_status,
	.message = replication_message,
	.iterate_devices = replication_iterate_devices,
	.io_hints = replication_io_hints,
};

static int __init dm_replication_init(void)
{
	int r;

	r = dmr_cow_init();
	if (r)
		return r;
	r = dm_register_target(&replication_target);
	if (r) {
		DMERR("target registration failed: %d", r);
		dmr_cow_exit();
	}
	return r;
}

static void __exit dm_replication_exit(void)
{
	dm_unregister_target(&replication_target);
	dmr_cow_exit();
}

module_init(dm_replication_init);
module_exit(dm_replication_exit);

MODULE_DESCRIPTION(DM_NAME " COLO-style block replication target");
MODULE_LICENSE("GPL");
