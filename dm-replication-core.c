// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: sessions and their loaded state (the core).
 *
 * This file owns what a loaded session is: the registry that lets a port
 * find the secondary over the same device, loading and unloading the stores,
 * the gate a new epoch closes, the chunk cells, the deferred bio lists, the
 * session's headers and epochs, events, errors and the failed mode.  It
 * calls only the stores (dm-replication-cow.c).
 *
 * Lock order (an arrow: the left one is held while the right one is taken):
 *
 *   dmr_sessions_lock: alone (a core is loaded and unloaded without it)
 *   core->state_lock -> a store's commit_lock -> a store's alloc_lock
 *   core->state_lock -> the commit's lock (dm-replication-commit.c)
 *   a bucket's lock -> the commit's lock
 *   core->lock, core->event_lock: alone
 *
 * state_lock serialises what changes the session's state and headers
 * (messages, the commit's cursor, a new epoch); status takes it to see a
 * change whole.  Nothing holding it waits for a worker that a suspend stops,
 * nor flushes a work of core->wq, whose cursor work takes it: active's
 * header work, flushed under it, has a workqueue of its own.
 * core->lock and the buckets' locks are spinlocks taken from any context.
 *
 * Chunk cells.  Chunks that are mapped in active (for top I/O) or in active
 * or hidden (for port writes) need no lock: a mapping never changes within an
 * epoch, and a new epoch drains all I/O first.  Everything else goes through
 * the chunk's bucket, under its spinlock:
 *  - a job (a copy-up into active, a full-chunk write into active, or a port
 *    write's copy into hidden) holds its chunk with its cell; every later bio
 *    for the chunk waits on the job and is mapped again when the job ends,
 *    when the chunk is mapped;
 *  - a bio that uses a chunk's place directly (a top read of the secondary
 *    device, a failover's write in place) pins its bucket; a port copy, or a
 *    failover extent, waits until its bucket has no pins, so no top read can
 *    see the secondary device half overwritten and no copy misses a write.
 */
#include <linux/blkdev.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/hash.h>
#include <linux/mempool.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-replication-core.h"

/* Active is persisted at least this often. */
#define DMR_PERSIST_PERIOD	HZ

static LIST_HEAD(dmr_sessions);
static DEFINE_MUTEX(dmr_sessions_lock);

/* Jobs, in a cache of their own: a job left at rmmod is reported. */
static struct kmem_cache *dmr_job_cache;

/**
 * dmr_core_module_init() - module-wide set-up of the core
 *
 * Return: 0 or -ENOMEM.
 */
int dmr_core_module_init(void)
{
	dmr_job_cache = KMEM_CACHE(dmr_job, 0);
	return dmr_job_cache ? 0 : -ENOMEM;
}

/**
 * dmr_core_module_exit() - module-wide tear-down of the core
 */
void dmr_core_module_exit(void)
{
	kmem_cache_destroy(dmr_job_cache);
}

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

/**
 * dmr_fail() - put the session in the failed mode
 * @core: the session's loaded state
 * @err: the negative errno of a durable write (a record commit, a header,
 *	 a flush) that failed
 * @what: what failed, for the log
 *
 * What that write was to make durable may or may not be on disk, so no FLUSH
 * may succeed again: from now on every bio that needs a persist or a flush
 * fails with EIO, no metadata is written, messages are refused, and status
 * shows "failed".  Reads, and writes to chunks already mapped, go on.  Only
 * a table reload, which loads the stores anew from disk, leaves the mode.
 * Any context; the first call wins.
 */
void dmr_fail(struct dmr_core *core, int err, const char *what)
{
	if (!err)
		err = -EIO;
	if (cmpxchg(&core->failed, 0, err))
		return;
	DMERR("%s: session failed: %s: error %d; fix the device, then reload the table",
	      core->name, what, err);
	dmr_set_error(core, err);
	dmr_raise_event(core);
}

/**
 * dmr_failed() - is the session in the failed mode?
 * @core: the session's loaded state
 *
 * Return: true once dmr_fail() was called.
 */
bool dmr_failed(struct dmr_core *core)
{
	return unlikely(READ_ONCE(core->failed));
}

/**
 * dmr_check_low_water() - raise the low water mark's event when it is time
 * @core: the session's loaded state
 * @st: a store that just gave out slots
 *
 * Once per epoch, when fewer slots than the mark are free.
 */
void dmr_check_low_water(struct dmr_core *core, struct dmr_store *st)
{
	u32 free = dmr_store_layout(st)->nr_slots - dmr_store_used(st);

	if (core->low_water_mark && free < core->low_water_mark &&
	    !atomic_xchg(&core->low_water_fired, 1))
		dmr_raise_event(core);
}

/**
 * dmr_gate_leave() - end a bio's count in flight
 * @core: the session's loaded state
 */
void dmr_gate_leave(struct dmr_core *core)
{
	/*
	 * Once the count is zero, dmr_freeze() may return before our wake-up:
	 * dmr_core_unload() waits for a grace period before it frees the core.
	 */
	rcu_read_lock();
	if (atomic_dec_and_test(&core->inflight) && READ_ONCE(core->frozen))
		wake_up(&core->drain_wait);
	rcu_read_unlock();
}

/**
 * dmr_gate_try_enter() - count a bio in flight when the gate is open
 * @core: the session's loaded state
 *
 * Never parks anything.
 *
 * Return: true when counted.
 */
bool dmr_gate_try_enter(struct dmr_core *core)
{
	atomic_inc(&core->inflight);
	/* Pairs with dmr_freeze(): it sees our count or we its gate. */
	smp_mb__after_atomic();
	if (likely(!READ_ONCE(core->frozen)))
		return true;
	dmr_gate_leave(core);
	return false;
}

/**
 * dmr_gate_enter() - count a bio in flight, or park it while the gate is shut
 * @core: the session's loaded state
 * @bio: the bio
 *
 * A parked bio goes to the deferred list when the gate opens.
 *
 * Return: true when counted, false when parked.
 */
bool dmr_gate_enter(struct dmr_core *core, struct bio *bio)
{
	for (;;) {
		if (likely(dmr_gate_try_enter(core)))
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
	/* Pairs with dmr_gate_try_enter(): we see its count or it the gate. */
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

/**
 * dmr_submit_pages() - fill a copy's bio with its pages and submit it
 * @bio: the bio, set up by bio_init() with a vec for each page
 * @pages: the pages
 * @bytes: how many bytes, from the start of the first page
 */
void dmr_submit_pages(struct bio *bio, struct page **pages, unsigned int bytes)
{
	unsigned int i, n;

	for (i = 0; bytes; i++, bytes -= n) {
		n = min_t(unsigned int, bytes, PAGE_SIZE);
		/* A vec each (the block layer merges adjacent pages). */
		__bio_add_page(bio, pages[i], n, 0);
	}
	submit_bio(bio);
}

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

/**
 * dmr_cell_holder() - the job that holds a chunk
 * @b: the chunk's bucket, locked
 * @chunk: the chunk
 *
 * Return: the job, or NULL when the chunk is free.
 */
struct dmr_job *dmr_cell_holder(struct dmr_bucket *b, u32 chunk)
{
	struct dmr_job *job;

	lockdep_assert_held(&b->lock);
	hlist_for_each_entry(job, &b->busy, cell)
		if (job->rec.chunk == chunk)
			return job;
	return NULL;
}

/**
 * dmr_cell_release() - end a job's hold on its chunk
 * @job: the job, holding its chunk
 *
 * The bios that waited for the chunk are mapped again.
 */
void dmr_cell_release(struct dmr_job *job)
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

/**
 * dmr_job_free() - free a job
 * @job: the job, holding no chunk
 */
void dmr_job_free(struct dmr_job *job)
{
	mempool_free(job, &job->core->job_pool);
}

/**
 * dmr_job_list_free() - free the jobs of a list of their records
 * @list: records of jobs, from a store
 */
void dmr_job_list_free(struct llist_node *list)
{
	struct dmr_job *job, *tmp;

	llist_for_each_entry_safe(job, tmp, list, rec.node)
		dmr_job_free(job);
}

/**
 * dmr_job_alloc() - allocate a job
 * @core: the session's loaded state
 * @gfp: allocation flags
 *
 * Return: the job, holding nothing, or NULL.
 */
struct dmr_job *dmr_job_alloc(struct dmr_core *core, gfp_t gfp)
{
	struct dmr_job *job = mempool_alloc(&core->job_pool, gfp);

	if (!job)
		return NULL;
	memset(job, 0, sizeof(*job));
	job->core = core;
	INIT_HLIST_NODE(&job->cell);
	bio_list_init(&job->waiters);
	atomic_set(&job->run_left, 1);
	return job;
}

/**
 * dmr_persist() - make a store's records durable, unless the session failed
 * @core: the session's loaded state
 * @st: the store
 * @one_write: see dmr_store_commit()
 * @err: set to 0 or the error
 *
 * In the failed mode the records are only taken, for the caller to drop.  A
 * failed commit puts the session in the failed mode.
 *
 * Return: the records, for the caller to free.
 */
struct llist_node *dmr_persist(struct dmr_core *core, struct dmr_store *st,
			       bool one_write, int *err)
{
	struct llist_node *list;

	if (dmr_failed(core)) {
		*err = -EIO;
		return dmr_store_take_pending(st);
	}
	list = dmr_store_commit(st, one_write, err);
	if (*err)
		dmr_fail(core, *err, dmr_store_role(st) == DMR_ROLE_ACTIVE ?
			 "persist of active's records" :
			 "persist of hidden's records");
	return list;
}

/**
 * dmr_persist_active() - persist active, and complete the flushes waiting
 * @core: the session's loaded state
 *
 * Once the session fails over, top writes also go in place into hidden and
 * straight to the secondary device: those are flushed too.
 *
 * Return: 0 or the error, which the waiting bios get too.
 */
int dmr_persist_active(struct dmr_core *core)
{
	struct bio_list waiters;
	struct llist_node *done;
	struct bio *bio;
	int err;

	spin_lock_irq(&core->lock);
	waiters = core->persist_waiters;
	bio_list_init(&core->persist_waiters);
	spin_unlock_irq(&core->lock);

	done = dmr_persist(core, core->active, true, &err);
	dmr_job_list_free(done);
	if (!err && READ_ONCE(core->state) != DMR_STATE_RUNNING) {
		err = blkdev_issue_flush(dmr_store_bdev(core->hidden));
		if (!err)
			err = blkdev_issue_flush(core->secondary);
		if (err)
			dmr_fail(core, err, "flush of hidden or the secondary device");
	}

	while ((bio = bio_list_pop(&waiters))) {
		if (err)
			bio->bi_status = errno_to_blk_status(err);
		bio_endio(bio);
	}
	return err;
}

static void dmr_persist_work(struct work_struct *w)
{
	dmr_persist_active(container_of(w, struct dmr_core, persist_work));
}

/**
 * dmr_wait_persist() - complete a bio after active's next persist
 * @core: the session's loaded state
 * @bio: a top flush, or a FUA write that is in
 */
void dmr_wait_persist(struct dmr_core *core, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&core->lock, flags);
	bio_list_add(&core->persist_waiters, bio);
	spin_unlock_irqrestore(&core->lock, flags);
	queue_work(core->wq, &core->persist_work);
}

/* The end of a top flush's own commit of active (dmr_persist_start()). */
static void dmr_persisted(void *context, void *arg, struct llist_node *records,
			  int err)
{
	struct dmr_core *core = context;
	struct bio *bio = arg;

	if (err) {
		dmr_fail(core, err, "persist of active's records");
		bio->bi_status = errno_to_blk_status(err);
	}
	dmr_job_list_free(records);
	bio_endio(bio);
}

/**
 * dmr_persist_start() - persist active for a top flush, without the worker
 * @core: the session's loaded state, running
 * @bio: a top flush
 *
 * When active's records can be committed in one write that needs no wait
 * (dmr_store_commit_start()), the flush completes in that write's end,
 * without the hop through the workqueue and the worker's three waits (on
 * brd, 2.8x the first touches with an fsync after each:
 * bench/experiments/flush.sh).  For map(): never waits for I/O.
 *
 * Return: true when the flush is taken; false when the caller must hand it
 * to dmr_wait_persist().
 */
bool dmr_persist_start(struct dmr_core *core, struct bio *bio)
{
	if (dmr_failed(core))
		return false;
	return dmr_store_commit_start(core->active, core->wq, dmr_persisted,
				      core, bio);
}

static void dmr_periodic_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(to_delayed_work(w),
					     struct dmr_core, periodic_work);

	if (dmr_store_has_pending(core->active))
		queue_work(core->wq, &core->persist_work);
	queue_delayed_work(core->wq, &core->periodic_work, DMR_PERSIST_PERIOD);
}

/* A store's header of a generation of the session. */
static void dmr_core_header(struct dmr_core *core, struct dmr_store *st,
			    u64 seq, enum dmr_state state, u64 epoch,
			    u64 cursor, struct dmr_header *h)
{
	memset(h, 0, sizeof(*h));
	h->role = dmr_store_role(st);
	h->seq = seq;
	h->epoch = epoch;
	memcpy(h->uuid, core->uuid, DMR_UUID_SIZE);
	h->state = state;
	h->chunk_sectors = core->chunk_sectors;
	h->secondary_sectors = core->len;
	h->layout = *dmr_store_layout(st);
	h->commit_cursor = cursor;
}

/* Brings a store's header to the session's current generation. */
static int dmr_core_write_header(struct dmr_core *core, struct dmr_store *st)
{
	struct dmr_header h;

	dmr_core_header(core, st, core->seq, core->state, core->epoch,
			core->cursor, &h);
	return dmr_store_write_header(st, core->io, &h, true);
}

static void dmr_active_header_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core,
					     active_header_work);
	int r;

	if (dmr_failed(core))
		return;
	r = dmr_store_write_header(core->active, core->io,
				   &core->active_header, false);
	if (r)
		dmr_fail(core, r, "write of active's header");
}

/**
 * dmr_core_new_generation() - make a new generation of the header durable
 * @core: the session's loaded state; the caller holds its state_lock
 * @state: the state the generation records
 * @epoch: its epoch
 * @cursor: its failover cursor
 * @flags: %DMR_GEN_NEW_EPOCH, %DMR_GEN_HIDDEN_ONLY, %DMR_GEN_ACTIVE_LATER
 *
 * Steps:
 *  1. wait for active's header of the generation before, so that active's
 *     header writes land in order;
 *  2. write hidden's header, FUA (and PREFLUSH, unless it starts a new epoch
 *     and so empties the store): the commit point.  On load the store with
 *     the newer generation gives the session's state, and the other store's
 *     header is brought up to it;
 *  3. take the new generation and the cursor in core (the caller takes
 *     state and epoch when it is ready to show them: dmr_core_set_state());
 *  4. write active's header: now, or from a worker with
 *     %DMR_GEN_ACTIVE_LATER, or not at all with %DMR_GEN_HIDDEN_ONLY.
 *
 * A failed write puts the session in the failed mode (the disk may hold
 * the old generation or the new one).  In the failed mode nothing is written.
 *
 * Return: 0, or a negative errno: then the core has the old generation
 * when step 2 failed, the new one when step 4 did.
 */
int dmr_core_new_generation(struct dmr_core *core, enum dmr_state state,
			    u64 epoch, u64 cursor, unsigned int flags)
{
	bool epoch_only = flags & DMR_GEN_NEW_EPOCH;
	u64 seq = core->seq + 1;
	struct dmr_header h;
	int r;

	lockdep_assert_held(&core->state_lock);
	if (dmr_failed(core))
		return -EIO;
	dmr_wait_active_header(core);				/* 1 */

	dmr_core_header(core, core->hidden, seq, state, epoch, cursor, &h);
	r = dmr_store_write_header(core->hidden, core->io, &h, !epoch_only);
	if (r) {						/* 2 */
		dmr_fail(core, r, "write of hidden's header");
		return r;
	}
	core->seq = seq;					/* 3 */
	core->cursor = cursor;

	if (flags & DMR_GEN_HIDDEN_ONLY)			/* 4 */
		return 0;
	dmr_core_header(core, core->active, seq, state, epoch, cursor, &h);
	if (flags & DMR_GEN_ACTIVE_LATER) {
		core->active_header = h;
		queue_work(core->header_wq, &core->active_header_work);
		return 0;
	}
	r = dmr_store_write_header(core->active, core->io, &h, !epoch_only);
	if (r)
		dmr_fail(core, r, "write of active's header");
	return r;
}

/**
 * dmr_core_set_state() - show a state the header holds
 * @core: the session's loaded state; the caller holds its state_lock
 * @state: the state, durable already (or the session failed)
 */
void dmr_core_set_state(struct dmr_core *core, enum dmr_state state)
{
	lockdep_assert_held(&core->state_lock);
	WRITE_ONCE(core->state, state);
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

/* ---- loading and unloading ----------------------------------------------------- */

/* Reads both stores' headers, checks them and decides how to load. */
static int dmr_read_headers(const struct dmr_core_args *a,
			    struct dm_io_client *io, struct dmr_header *hh,
			    struct dmr_header *ah,
			    enum dmr_load_action *action, char **error)
{
	int hrc, arc, r;

	hrc = dmr_store_read_header(io, a->hidden, DMR_ROLE_HIDDEN,
				    a->chunk_sectors, a->len, hh, error);
	arc = hrc < 0 ? hrc :
	      dmr_store_read_header(io, a->active, DMR_ROLE_ACTIVE,
				    a->chunk_sectors, a->len, ah, error);
	if (arc < 0)
		return arc;

	r = dmr_headers_reconcile(hrc, hh, arc, ah, action, error);
	if (!r && hrc)
		hh->seq = 0;
	if (!r && arc)
		ah->seq = 0;
	return r;
}

/**
 * dmr_core_read_state() - the session's state on disk, reading only
 * @a: the table's devices
 * @state: set to the state (running for blank stores)
 * @error: set to the reason on failure
 *
 * A secondary table's constructor refuses bad stores with this, before
 * anything is written.
 *
 * Return: 0 or a negative errno with @error set.
 */
int dmr_core_read_state(const struct dmr_core_args *a, enum dmr_state *state,
			char **error)
{
	struct dmr_header hh, ah;
	enum dmr_load_action action;
	struct dm_io_client *io;
	int r;

	io = dm_io_client_create();
	if (IS_ERR(io)) {
		*error = "Cannot create a dm-io client";
		return PTR_ERR(io);
	}
	r = dmr_read_headers(a, io, &hh, &ah, &action, error);
	dm_io_client_destroy(io);
	if (!r)
		*state = action == DMR_LOAD_RESUME ?
			 (hh.seq >= ah.seq ? hh.state : ah.state) :
			 DMR_STATE_RUNNING;
	return r;
}

static void dmr_core_free(struct dmr_core *core)
{
	if (core->header_wq)
		destroy_workqueue(core->header_wq);
	if (core->wq)
		destroy_workqueue(core->wq);
	dmr_store_destroy(core->active);
	dmr_store_destroy(core->hidden);
	if (core->kc)
		dm_kcopyd_client_destroy(core->kc);
	if (core->io)
		dm_io_client_destroy(core->io);
	mempool_exit(&core->job_pool);
	kvfree(core->buckets);
	kfree(core);
}

static struct dmr_core *dmr_core_alloc(const struct dmr_core_args *a)
{
	struct dmr_core *core = kzalloc(sizeof(*core), GFP_KERNEL);
	unsigned int i;

	if (!core)
		return NULL;
	core->secondary = a->secondary;
	core->len = a->len;
	core->chunk_sectors = a->chunk_sectors;
	core->chunk_shift = ilog2(a->chunk_sectors);
	core->nr_chunks = DIV_ROUND_UP_ULL(core->len, core->chunk_sectors);
	mutex_init(&core->state_lock);
	mutex_init(&core->event_lock);
	init_waitqueue_head(&core->drain_wait);
	spin_lock_init(&core->lock);
	bio_list_init(&core->deferred);
	bio_list_init(&core->frozen_bios);
	bio_list_init(&core->persist_waiters);
	init_llist_head(&core->done_jobs);
	INIT_WORK(&core->persist_work, dmr_persist_work);
	INIT_WORK(&core->active_header_work, dmr_active_header_work);
	INIT_WORK(&core->event_work, dmr_event_work);
	INIT_DELAYED_WORK(&core->periodic_work, dmr_periodic_work);
	strscpy(core->name, a->name, sizeof(core->name));

	core->buckets = kvcalloc(DMR_BUCKETS, sizeof(*core->buckets),
				 GFP_KERNEL);
	if (!core->buckets)
		goto bad;
	for (i = 0; i < DMR_BUCKETS; i++) {
		spin_lock_init(&core->buckets[i].lock);
		INIT_HLIST_HEAD(&core->buckets[i].busy);
		bio_list_init(&core->buckets[i].wait_pins);
	}
	if (mempool_init_slab_pool(&core->job_pool, 64, dmr_job_cache))
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
	core->wq = alloc_workqueue("dmr-%s", WQ_MEM_RECLAIM, 0, a->name);
	if (!core->wq)
		goto bad;
	core->header_wq = alloc_ordered_workqueue("dmr-hdr-%s", WQ_MEM_RECLAIM,
						  a->name);
	if (!core->header_wq)
		goto bad;
	return core;
bad:
	dmr_core_free(core);
	return NULL;
}

/* Sets up the session's shared header fields from what the disks hold. */
static void dmr_core_adopt(struct dmr_core *core, enum dmr_load_action action,
			   const struct dmr_header *hh,
			   const struct dmr_header *ah)
{
	const struct dmr_header *newer = hh->seq >= ah->seq ? hh : ah;

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
		core->cursor = newer->commit_cursor;
	}
}

/*
 * Brings a blank or lagging store to the session's generation.  Called once
 * both stores' records have loaded, so that a load refused for its records
 * has written nothing.
 */
static int dmr_core_catch_up(struct dmr_core *core,
			     const struct dmr_header *hh,
			     const struct dmr_header *ah)
{
	int r = 0;

	if (hh->seq != core->seq)
		r = dmr_core_write_header(core, core->hidden);
	if (!r && ah->seq != core->seq)
		r = dmr_core_write_header(core, core->active);
	return r;
}

/* A resumed store keeps the layout its header gives; a new one gets one. */
static struct dmr_store *dmr_store_setup(struct dmr_core *core,
					 const char *name, enum dmr_role role,
					 struct block_device *bdev,
					 const struct dmr_header *h)
{
	struct dmr_layout l = h->layout;
	struct dmr_store *st;

	if (!h->seq)
		dmr_layout_init(&l, bdev_nr_sectors(bdev), core->chunk_sectors);
	st = dmr_store_create(name, role, &l, core->chunk_sectors);
	if (st && dmr_store_open(st, bdev)) {
		dmr_store_destroy(st);
		st = NULL;
	}
	return st;
}

/**
 * dmr_core_load() - load a session's stores
 * @a: the table's devices
 * @error: set to the reason on failure
 *
 * Formats both stores when both are blank; otherwise takes the session's
 * state, epoch and mappings from them.  Reads every record block once.
 *
 * Return: the core, or an ERR_PTR with @error set.
 */
struct dmr_core *dmr_core_load(const struct dmr_core_args *a, char **error)
{
	struct dmr_header hh, ah;
	enum dmr_load_action action;
	struct dmr_core *core;
	u32 hidden_only = 0, unused = 0;
	int r;

	core = dmr_core_alloc(a);
	if (!core) {
		*error = "Cannot allocate the replication state";
		return ERR_PTR(-ENOMEM);
	}

	r = dmr_read_headers(a, core->io, &hh, &ah, &action, error);
	if (r)
		goto bad;
	core->hidden = dmr_store_setup(core, "hidden", DMR_ROLE_HIDDEN,
				       a->hidden, &hh);
	core->active = dmr_store_setup(core, "active", DMR_ROLE_ACTIVE,
				       a->active, &ah);
	if (!core->hidden || !core->active) {
		*error = "Cannot set up the stores";
		r = -ENOMEM;
		goto bad;
	}

	dmr_core_adopt(core, action, &hh, &ah);
	r = dmr_store_load(core->active, core->epoch, core->nr_chunks, NULL,
			   &unused, error);
	if (!r)
		r = dmr_store_load(core->hidden, core->epoch, core->nr_chunks,
				   core->active, &hidden_only, error);
	if (r)
		goto bad;
	r = dmr_core_catch_up(core, &hh, &ah);
	if (r) {
		*error = "Cannot write a store header";
		goto bad;
	}
	atomic_set(&core->hidden_only, hidden_only);

	queue_delayed_work(core->wq, &core->periodic_work, DMR_PERSIST_PERIOD);
	return core;
bad:
	dmr_core_free(core);
	return ERR_PTR(r);
}

/**
 * dmr_core_unload() - unload the stores
 * @core: the session's loaded state; nothing is in flight on the top, and
 *        the failover's commit is gone
 *
 * What completed is persisted first (unless the session failed).
 */
void dmr_core_unload(struct dmr_core *core)
{
	dmr_freeze(core);
	synchronize_rcu();	/* the last dmr_gate_leave() has woken us */
	cancel_delayed_work_sync(&core->periodic_work);
	flush_workqueue(core->wq);
	dmr_wait_active_header(core);
	dmr_persist_active(core);
	dmr_job_list_free(dmr_store_take_pending(core->active));
	dmr_core_free(core);
}

/**
 * dmr_new_epoch() - move the session to a new epoch and a state, durably
 * @core: the session's loaded state; the caller holds its state_lock
 * @state: the state of the new epoch
 *
 * A checkpoint, stop, or the end of a failover.  Steps:
 *  1. drain the top and the port (new bios are parked);
 *  2. flush the secondary device: the new epoch drops hidden's old copies,
 *     so what the port wrote must be durable first (at the end of a
 *     failover the commit has flushed already);
 *  3. a new generation of the header with the new epoch and @state, hidden's
 *     the commit point, active's from a worker (it stalls neither the top
 *     nor the message; a load brings a lagging header up to date);
 *  4. empty both stores in constant time, then show the new state;
 *  5. let the parked bios go.
 *
 * Return: 0, or a negative errno; a failure before the commit point changes
 * nothing in core, and every failure of a write fails the session.
 */
int dmr_new_epoch(struct dmr_core *core, enum dmr_state state)
{
	u64 epoch = core->epoch + 1 ? core->epoch + 1 : 1;
	enum dmr_state old_state = core->state;
	struct llist_node *discarded;
	int r;

	lockdep_assert_held(&core->state_lock);
	if (dmr_failed(core))
		return -EIO;
	r = dmr_store_prepare_reset(core->hidden);
	if (!r)
		r = dmr_store_prepare_reset(core->active);
	if (r)
		return r;

	dmr_wait_active_header(core);
	dmr_freeze(core);					/* 1 */

	r = old_state == DMR_STATE_RUNNING ?			/* 2 */
	    blkdev_issue_flush(core->secondary) : 0;
	if (r) {
		dmr_fail(core, r, "flush of the secondary device");
		goto out;
	}
	r = dmr_core_new_generation(core, state, epoch, core->cursor,	/* 3 */
				    DMR_GEN_NEW_EPOCH | DMR_GEN_ACTIVE_LATER);
	if (r)
		goto out;

	core->epoch = epoch;					/* 4 */
	dmr_store_reset(core->hidden, epoch, &discarded);
	dmr_job_list_free(discarded);
	dmr_store_reset(core->active, epoch, &discarded);
	dmr_job_list_free(discarded);
	atomic_set(&core->hidden_only, 0);
	atomic_set(&core->error, 0);
	atomic_set(&core->low_water_fired, 0);
	core->nr_checkpoints++;
	/* Status shows the new state only with the stores emptied. */
	dmr_core_set_state(core, state);
	if (state != old_state)
		dmr_raise_event(core);
out:
	dmr_thaw(core);						/* 5 */
	return r;
}

/* ---- sessions ---------------------------------------------------------------- */

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

/**
 * dmr_session_attach_top() - a secondary table joins its session
 * @md: the table's mapped device
 * @a: the table's devices
 * @error: set to the reason on failure
 *
 * Joins the session of the secondary device, making it when there is none.
 * Only one mapped device may be the secondary of a session; a reload of that
 * device's table joins the same session, with the same stores while they
 * are loaded.
 *
 * Return: the session, or an ERR_PTR with @error set.
 */
struct dmr_session *dmr_session_attach_top(struct mapped_device *md,
					   const struct dmr_core_args *a,
					   char **error)
{
	dev_t dev = a->secondary->bd_dev;
	struct dmr_session *ses;
	int r = 0;

	mutex_lock(&dmr_sessions_lock);
	ses = dmr_session_find(dev);
	if (ses && ses->top_md && ses->top_md != md) {
		*error = "Secondary device is already used by another replication secondary";
		r = -EBUSY;
		goto out;
	}
	if (ses && ses->port_md == md) {
		*error = "Device is the port of this secondary device";
		r = -EINVAL;
		goto out;
	}
	if (ses && rcu_access_pointer(ses->core) &&
	    (ses->hidden_dev != a->hidden->bd_dev ||
	     ses->active_dev != a->active->bd_dev ||
	     ses->chunk_sectors != a->chunk_sectors)) {
		*error = "Cannot change the stores or chunk size of a loaded session";
		r = -EINVAL;
		goto out;
	}
	if (!ses) {
		ses = kzalloc(sizeof(*ses), GFP_KERNEL);
		if (!ses) {
			*error = "Cannot allocate replication session";
			r = -ENOMEM;
			goto out;
		}
		ses->secondary_dev = dev;
		list_add(&ses->list, &dmr_sessions);
	}
	ses->top_md = md;
	ses->nr_top++;
out:
	mutex_unlock(&dmr_sessions_lock);
	return r ? ERR_PTR(r) : ses;
}

/**
 * dmr_session_set_disk_state() - the state a top's constructor read
 * @ses: the session
 * @state: the state on disk, shown until the stores are loaded
 */
void dmr_session_set_disk_state(struct dmr_session *ses, enum dmr_state state)
{
	mutex_lock(&dmr_sessions_lock);
	ses->disk_state = state;
	mutex_unlock(&dmr_sessions_lock);
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

/**
 * dmr_session_attach_port() - a port table joins the session of its device
 * @md: the port's mapped device
 * @secondary: the secondary device
 * @error: set to the reason on failure
 *
 * A secondary table must hold the session, and the session must be running:
 * once it has failed over, the primary's writes must never reach it again
 * (the split-brain guard).
 *
 * Return: the session, or an ERR_PTR with @error set.
 */
struct dmr_session *dmr_session_attach_port(struct mapped_device *md,
					    dev_t secondary, char **error)
{
	struct dmr_session *ses;
	int r = 0;

	mutex_lock(&dmr_sessions_lock);
	ses = dmr_session_find(secondary);
	if (!ses || !ses->nr_top) {
		*error = "No replication secondary is loaded over this secondary device";
		r = -ENODEV;
		goto out;
	}
	if (ses->top_md == md) {
		*error = "Port and secondary must be different devices";
		r = -EINVAL;
		goto out;
	}
	if (ses->port_md && ses->port_md != md) {
		*error = "Secondary device already has a port";
		r = -EBUSY;
		goto out;
	}
	if (dmr_session_state(ses) != DMR_STATE_RUNNING) {
		/* The split-brain guard: see Documentation, "Failover". */
		*error = "Session failed over: zero the first 4 KiB of both stores to start anew";
		r = -EPERM;
		goto out;
	}
	ses->port_md = md;
	ses->nr_port++;
out:
	mutex_unlock(&dmr_sessions_lock);
	return r ? ERR_PTR(r) : ses;
}

/**
 * dmr_session_detach_top() - a secondary table leaves its session
 * @ses: the session
 *
 * Return: the core to unload when this was the session's last top table
 * (no port bio sees it any more), else NULL.
 */
struct dmr_core *dmr_session_detach_top(struct dmr_session *ses)
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

/**
 * dmr_session_detach_port() - a port table leaves its session
 * @ses: the session
 */
void dmr_session_detach_port(struct dmr_session *ses)
{
	mutex_lock(&dmr_sessions_lock);
	ses->nr_port--;
	dmr_session_put(ses);
	mutex_unlock(&dmr_sessions_lock);
}

/**
 * dmr_session_core() - the session's loaded core, for its top table
 * @ses: the session
 *
 * Only the top's tables change the pointer, in their preresume and dtr,
 * which dm serialises with their map, status and message callbacks.
 *
 * Return: the core, or NULL.
 */
struct dmr_core *dmr_session_core(struct dmr_session *ses)
{
	return rcu_dereference_protected(ses->core, true);
}

/**
 * dmr_session_core_rcu() - the session's loaded core, for its port
 * @ses: the session
 *
 * The caller holds rcu_read_lock() and counts its bio in flight before it
 * leaves the read-side section, so the core outlives the bio.
 *
 * Return: the core, or NULL.
 */
struct dmr_core *dmr_session_core_rcu(struct dmr_session *ses)
{
	return rcu_dereference(ses->core);
}

/**
 * dmr_session_publish() - make a loaded core the session's
 * @ses: the session, with no core
 * @core: the core
 * @a: what it was loaded from
 */
void dmr_session_publish(struct dmr_session *ses, struct dmr_core *core,
			 const struct dmr_core_args *a)
{
	mutex_lock(&dmr_sessions_lock);
	ses->hidden_dev = a->hidden->bd_dev;
	ses->active_dev = a->active->bd_dev;
	ses->chunk_sectors = a->chunk_sectors;
	rcu_assign_pointer(ses->core, core);
	mutex_unlock(&dmr_sessions_lock);
}

/**
 * dmr_session_withdraw() - take the session's core away
 * @ses: the session
 *
 * Return: the core, which no port bio sees any more, or NULL.
 */
struct dmr_core *dmr_session_withdraw(struct dmr_session *ses)
{
	struct dmr_core *core;

	mutex_lock(&dmr_sessions_lock);
	core = rcu_dereference_protected(ses->core,
					 lockdep_is_held(&dmr_sessions_lock));
	RCU_INIT_POINTER(ses->core, NULL);
	mutex_unlock(&dmr_sessions_lock);
	if (core)
		synchronize_rcu();
	return core;
}
