// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: the data path of a secondary's top and port.
 *
 * This file owns what happens to a bio of the top or the port: where it is
 * remapped, the jobs that put a chunk into a store first (a copy-up or a
 * whole-chunk write into active, the port's copy-before-write into hidden),
 * runs over several chunks, flushes and FUA, and the completions.  It also
 * loads a session for the target: the core, then this layer's works, then
 * the failover's commit.
 *
 * It calls the failover's commit (dm-replication-commit.c), the core
 * (dm-replication-core.c) and the stores; nothing below calls it but through
 * the works it sets up.
 */
#include <linux/blkdev.h>
#include <linux/dm-kcopyd.h>
#include <linux/rcupdate.h>
#include <linux/sizes.h>
#include <linux/slab.h>

#include "dm-replication-commit.h"
#include "dm-replication-core.h"
#include "dm-replication-io.h"

/* Per-bio data of the top and the port. */
struct dmr_bio {
	struct dmr_core *core;		/* set when counted in flight */
	struct dm_target *ti;
	struct dmr_job *job;		/* a full-chunk write's (or a run's first), until mapped */
	u32 chunk;			/* a pinning bio's chunk */
	u8 flags;
};

#define DMR_PB_PINNED		BIT(0)	/* counted in its bucket's pins */
#define DMR_PB_PORT		BIT(1)	/* a port bio */
#define DMR_PB_PERSISTED	BIT(2)	/* a FUA write that waited for active */

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

static void dmr_remap_store(struct dmr_core *core, struct bio *bio,
			    struct dmr_store *st, u32 slot)
{
	sector_t in_chunk = dmr_bio_offset(bio) & (core->chunk_sectors - 1);

	bio_set_dev(bio, dmr_store_bdev(st));
	bio->bi_iter.bi_sector = dmr_store_slot_sector(st, slot) + in_chunk;
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

/* A FLUSH or a FUA write: what the failed mode refuses. */
static bool dmr_bio_needs_flush(struct bio *bio)
{
	return bio->bi_opf & (REQ_PREFLUSH | REQ_FUA);
}

/* ---- jobs and their completions ----------------------------------------------- */

/* Drops a bio's pin of its chunk's bucket; what waited for none may go. */
static void dmr_unpin(struct dmr_core *core, u32 chunk)
{
	struct dmr_bucket *b = dmr_bucket(core, chunk);
	struct bio_list waiters;
	unsigned long flags;
	bool last;

	bio_list_init(&waiters);
	spin_lock_irqsave(&b->lock, flags);
	last = !--b->pins;
	if (last) {
		waiters = b->wait_pins;
		bio_list_init(&b->wait_pins);
	}
	spin_unlock_irqrestore(&b->lock, flags);

	dmr_defer_bios(core, &waiters);
	/* A failover's extent may wait for the bucket's writers. */
	if (last)
		dmr_commit_writer_done(core);
}

/* Inserts a finished job's mapping (its slot has room: no allocation). */
static int dmr_job_map(struct dmr_job *job)
{
	struct dmr_core *core = job->core;
	u32 chunk = job->rec.chunk, slot;
	int r;

	/* Hidden maps a chunk only after its record is persisted. */
	r = dmr_store_insert(job->store, chunk, job->rec.slot,
			     job->store == core->hidden);
	if (r)
		return r;
	job->rec.mapped = true;

	if (job->store == core->active) {
		if (dmr_store_lookup(core->hidden, chunk, &slot))
			atomic_dec(&core->hidden_only);
	} else if (!dmr_store_lookup(core->active, chunk, &slot)) {
		atomic_inc(&core->hidden_only);
	}
	return 0;
}

/*
 * While the session runs, top writes go to active only: when active has no
 * record to persist, a FLUSH of the top is a FLUSH of active's device, and a
 * FUA write was made durable by its own FUA.
 */
static bool dmr_active_clean(struct dmr_core *core, enum dmr_state state)
{
	return state == DMR_STATE_RUNNING && dmr_store_clean(core->active);
}

/*
 * Otherwise top flushes and FUA writes complete after active's next
 * persist; a FUA write is marked so that its end does not wait again.
 */
static void dmr_wait_active(struct dmr_core *core, struct bio *bio)
{
	dmr_pb(bio)->flags |= DMR_PB_PERSISTED;
	dmr_wait_persist(core, bio);
}

/*
 * A port write's copy is in hidden and persisted: map it, then write.  A run
 * writes once all its chunks are mapped, in whatever order their records
 * were persisted.
 */
static void dmr_cbw_persisted(struct dmr_job *job, int err)
{
	struct dmr_job *head = job->run_head ?: job;
	struct dmr_core *core = job->core;
	struct bio *bio = job->bio;

	if (!err)
		err = dmr_job_map(job);
	dmr_cell_release(job);
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

/*
 * A persist of hidden is one write (dmr_store_commit()) only when the bio it
 * serves is the only one in flight: at QD1 that made a port first touch a
 * fifth faster on brd, while at QD32 the usual, longer commit gathers more
 * of the copies that end meanwhile into the next one, and one write for
 * every commit was a tenth slower there (bench/experiments/portpersist.sh).
 */
static void dmr_hidden_persist_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core,
					     hidden_persist_work);
	struct dmr_job *job, *tmp;
	struct llist_node *done;
	int err;

	done = dmr_persist(core, core->hidden,
			   atomic_read(&core->inflight) <= 1, &err);
	done = llist_reverse_order(done);
	llist_for_each_entry_safe(job, tmp, done, rec.node)
		dmr_cbw_persisted(job, err);
}

/* A job failed before its data was in: fail its bio, free the chunk. */
static void dmr_job_fail(struct dmr_job *job, int err)
{
	struct bio *bio = job->bio;

	dmr_cell_release(job);
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

	atomic_dec(&core->copies);
	if (read_err || write_err) {
		dmr_job_fail(job, -EIO);
		return;
	}
	r = dmr_job_map(job);
	if (r) {
		dmr_job_fail(job, r);
		return;
	}
	dmr_remap_store(core, bio, core->active, job->rec.slot);
	dmr_cell_release(job);
	/*
	 * The chunk's old content is in: its record may be persisted now.
	 * A persist frees the job, so this is the job's last use here.
	 */
	dmr_store_queue(core->active, &job->rec);
	submit_bio_noacct(bio);
}

static void dmr_run_abandon(struct dmr_job *job);

/* The copy of a port write's chunks (one, or a run's) is in hidden. */
static void dmr_cbw_copied(int read_err, unsigned long write_err,
			   void *context)
{
	struct dmr_job *job = context, *next;
	struct dmr_core *core = job->core;
	struct bio *bio = job->bio;

	atomic_dec(&core->copies);
	if (read_err || write_err) {
		dmr_set_error(core, -EIO);
		dmr_run_abandon(job);
		dmr_fail_bio(bio, -EIO);
		return;
	}
	for (; job; job = next) {
		/* Once queued, a job may be persisted and freed at once. */
		next = job->run_next;
		dmr_store_queue(core->hidden, &job->rec);
	}
	queue_work(core->wq, &core->hidden_persist_work);
}

/* ---- copies: a chunk, or a short run, with the target's own bios ------------ */

/*
 * A copy of the data path reads into pages of its own and writes them, with
 * bios of its own.  The read is issued at once; its end queues the copy's
 * work, which issues the write; the write's end queues it again, and it
 * tells the copy's owner.  A copy into hidden that succeeds is told at
 * once, from its write's end.  The work also issues the write when the read
 * ends in process context: issuing a bio may sleep, and a bio's end is not
 * known to be a context that may (a top copy-up without these hops was 10 %
 * faster on brd, a port first touch at QD32 a quarter slower:
 * bench/experiments/copyhop.sh).
 *
 * Only a lone copy goes this way: while another copy is in flight (ours or
 * dm-kcopyd's: core->copies counts both), it goes to dm-kcopyd, as do copies
 * larger than DMR_XCOPY_PAGES pages and those that find no memory without
 * waiting.  dm-kcopyd passes every copy three times through its one worker,
 * which costs a lone copy (a first touch at queue depth 1: 6-20 % of its
 * time), but with every copy our own, 4 KiB first touches at queue depth 32
 * were up to a third slower (bench/README.md; not traced: its worker ends
 * many copies together, which may let more records share a persist).
 */
#define DMR_XCOPY_PAGES		16
#define DMR_XCOPY_MAX		1	/* copies in flight, own or dm-kcopyd's */

struct dmr_xcopy {
	struct dmr_core *core;
	dm_kcopyd_notify_fn fn;
	void *context;
	bool end_in_irq;		/* @fn may be called from a bio's end */
	bool writing;			/* the read is done */
	int read_err;
	unsigned long write_err;
	struct block_device *to_bdev;
	sector_t to;
	unsigned int bytes;
	struct work_struct work;	/* dmr_xcopy_work() */
	struct bio bio;
	struct bio_vec bvec[DMR_XCOPY_PAGES];
	struct page *pages[DMR_XCOPY_PAGES];
};

static void dmr_xcopy_free(struct dmr_xcopy *x)
{
	unsigned int i;

	for (i = 0; i < DMR_XCOPY_PAGES && x->pages[i]; i++)
		__free_page(x->pages[i]);
	kfree(x);
}

/* A copy with pages for @bytes, or NULL: it never waits for memory. */
static struct dmr_xcopy *dmr_xcopy_alloc(unsigned int bytes)
{
	const gfp_t gfp = GFP_NOWAIT | __GFP_NOWARN;
	struct dmr_xcopy *x;
	unsigned int i;

	if (bytes > DMR_XCOPY_PAGES * PAGE_SIZE)
		return NULL;
	x = kzalloc(sizeof(*x), gfp);
	if (!x)
		return NULL;
	for (i = 0; i < DIV_ROUND_UP(bytes, PAGE_SIZE); i++) {
		x->pages[i] = alloc_page(gfp);
		if (!x->pages[i]) {
			dmr_xcopy_free(x);
			return NULL;
		}
	}
	x->bytes = bytes;
	return x;
}

/* Frees the copy, then tells its owner, whose bio may then let the core go. */
static void dmr_xcopy_end(struct dmr_xcopy *x)
{
	dm_kcopyd_notify_fn fn = x->fn;
	unsigned long write_err = x->write_err;
	int read_err = x->read_err;
	void *context = x->context;

	dmr_xcopy_free(x);
	fn(read_err, write_err, context);
}

static void dmr_xcopy_endio(struct bio *bio)
{
	struct dmr_xcopy *x = bio->bi_private;

	if (bio->bi_status) {
		if (x->writing)
			x->write_err = 1;
		else
			x->read_err = 1;
	}
	bio_uninit(bio);
	if (x->writing && !x->write_err && x->end_in_irq) {
		dmr_xcopy_end(x);
		return;
	}
	/* A bio may end in interrupt context: the copy's work goes on. */
	queue_work(x->core->wq, &x->work);
}

static void dmr_xcopy_submit(struct dmr_xcopy *x, struct block_device *bdev,
			     sector_t sector, blk_opf_t opf)
{
	bio_init(&x->bio, bdev, x->bvec, DMR_XCOPY_PAGES, opf);
	x->bio.bi_iter.bi_sector = sector;
	x->bio.bi_end_io = dmr_xcopy_endio;
	x->bio.bi_private = x;
	dmr_submit_pages(&x->bio, x->pages, x->bytes);
}

/* 2. Writes the copy whose read has ended (a failed read ends it); 3. ends it. */
static void dmr_xcopy_work(struct work_struct *w)
{
	struct dmr_xcopy *x = container_of(w, struct dmr_xcopy, work);

	if (x->writing || x->read_err) {
		dmr_xcopy_end(x);
		return;
	}
	x->writing = true;
	dmr_xcopy_submit(x, x->to_bdev, x->to, REQ_OP_WRITE | REQ_SYNC);
}

/*
 * Copies @job's chunk, or its run's chunks, into the job's slots:
 *  1. reads them from @from_bdev;
 *  2. writes them to the slots, and 3. calls @fn (dmr_xcopy_work()).
 * @fn is called in process context, as dm-kcopyd calls it, unless
 * @end_in_irq: then a copy that succeeds may call it from its write's end.
 */
static void dmr_copy(struct dmr_core *core, struct dmr_job *job,
		     struct block_device *from_bdev, sector_t from,
		     dm_kcopyd_notify_fn fn, bool end_in_irq)
{
	struct dmr_store *st = job->store;
	sector_t len = 0;
	struct dmr_xcopy *x;
	struct dmr_job *j;
	struct dm_io_region src = {
		.bdev = from_bdev,
		.sector = from,
	};
	struct dm_io_region dst = {
		.bdev = dmr_store_bdev(st),
		.sector = dmr_store_slot_sector(st, job->rec.slot),
	};

	for (j = job; j; j = j->run_next)
		len += dmr_chunk_len(core, j->rec.chunk);
	src.count = len;
	dst.count = len;
	x = NULL;
	/* Both ways, @fn ends the count: dmr_copy_up_done(), dmr_cbw_copied(). */
	if (atomic_inc_return(&core->copies) <= DMR_XCOPY_MAX)
		x = dmr_xcopy_alloc(len << SECTOR_SHIFT);
	if (!x) {
		dm_kcopyd_copy(core->kc, &src, 1, &dst, 0, fn, job);
		return;
	}
	x->core = core;
	x->fn = fn;
	x->context = job;
	x->end_in_irq = end_in_irq;
	x->to_bdev = dst.bdev;
	x->to = dst.sector;
	INIT_WORK(&x->work, dmr_xcopy_work);
	dmr_xcopy_submit(x, src.bdev, src.sector, REQ_OP_READ | REQ_SYNC);	/* 1 */
}

/*
 * A write of whole chunks is in: maps its chunks and queues their records.
 * A chunk that fails to map fails the bio (@status); so do the run's chunks
 * after it.  Process context: a map insert takes a spinlock that is not
 * irq-safe.
 */
static void dmr_done_map(struct dmr_core *core, struct bio *bio,
			 blk_status_t *status)
{
	struct dmr_job *job = dmr_pb(bio)->job, *next;

	dmr_pb(bio)->job = NULL;
	for (; job; job = next) {
		int r = *status ? -EIO : dmr_job_map(job);

		next = job->run_next;
		dmr_cell_release(job);
		if (r) {
			dmr_job_free(job);
			if (!*status)
				*status = errno_to_blk_status(r);
		} else {
			dmr_store_queue(core->active, &job->rec);
		}
	}
}

/* Maps the whole-chunk writes that ended in interrupt context; ends them. */
static void dmr_done_work(struct work_struct *w)
{
	struct dmr_core *core = container_of(w, struct dmr_core, done_work);
	struct dmr_job *job, *tmp;
	struct llist_node *list;

	list = llist_reverse_order(llist_del_all(&core->done_jobs));
	llist_for_each_entry_safe(job, tmp, list, done) {
		struct bio *bio = job->bio;

		dmr_done_map(core, bio, &bio->bi_status);
		bio_endio(bio);
	}
}

/*
 * A port write needs no copy into hidden when hidden has the chunk, or when
 * active has it durably: the top never reads the secondary device for it
 * again in this epoch, not even after a crash.  (An active mapping whose
 * record is not persisted yet would be lost in a crash, and the top would
 * then read the port's write.)
 */
static bool dmr_port_needs_no_copy(struct dmr_core *core, u32 chunk)
{
	u32 slot;

	return dmr_store_lookup(core->hidden, chunk, &slot) ||
	       dmr_store_lookup_durable(core->active, chunk);
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
	holder = dmr_cell_holder(b, chunk);
	if (holder) {
		bio_list_add(&holder->waiters, bio);
		ret = DMR_QUEUED;
	} else if (port ? dmr_port_needs_no_copy(core, chunk) :
			  dmr_store_lookup(core->active, chunk, &slot)) {
		ret = DMR_MAPPED;
	} else if (port && b->pins) {
		bio_list_add(&b->wait_pins, bio);
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
	if (r == -EAGAIN) {
		/* The map makes room ahead, a page of slots or more at once. */
		r = dmr_store_reserve(st, 1);
		if (!r)
			r = dmr_store_alloc_slot(st, &job->rec.slot);
		if (r == -EAGAIN)
			r = -ENOMEM;
	}
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

	if (dmr_store_lookup(core->active, chunk, &slot)) {
		dmr_remap_store(core, bio, core->active, slot);
		return DM_MAPIO_REMAPPED;
	}
	if (dmr_store_lookup(core->hidden, chunk, &slot)) {
		dmr_remap_store(core, bio, core->hidden, slot);
		return DM_MAPIO_REMAPPED;
	}

	b = dmr_bucket(core, chunk);
	spin_lock_irq(&b->lock);
	holder = dmr_cell_holder(b, chunk);
	if (holder) {
		bio_list_add(&holder->waiters, bio);
		spin_unlock_irq(&b->lock);
		return DM_MAPIO_SUBMITTED;
	}
	/* Mapped since the lookups above?  Map again, outside the lock. */
	if (dmr_store_lookup(core->active, chunk, &slot) ||
	    dmr_store_lookup(core->hidden, chunk, &slot)) {
		spin_unlock_irq(&b->lock);
		return dmr_top_read(core, bio, chunk);
	}
	b->pins++;
	spin_unlock_irq(&b->lock);

	dmr_pb(bio)->flags |= DMR_PB_PINNED;
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

	/* A new mapping needs a persist. */
	if (dmr_failed(core)) {
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}
	job = dmr_new_job(core, bio, chunk, false, &claim);
	switch (claim) {
	case DMR_QUEUED:
		return DM_MAPIO_SUBMITTED;
	case DMR_MAPPED:
		if (WARN_ON_ONCE(!dmr_store_lookup(core->active, chunk, &slot))) {
			dmr_fail_bio(bio, -EIO);
			return DM_MAPIO_SUBMITTED;
		}
		dmr_remap_store(core, bio, core->active, slot);
		return DM_MAPIO_REMAPPED;
	case DMR_CLAIMED:
		if (!job)
			return DM_MAPIO_SUBMITTED;
		break;
	}

	r = dmr_start_job(core, job, core->active);
	if (r) {
		dmr_job_fail(job, r);
		return DM_MAPIO_SUBMITTED;
	}

	if (dmr_covers_chunk(core, bio, chunk)) {
		/* Nothing to copy: write, and map at completion (end_io). */
		dmr_pb(bio)->job = job;
		dmr_remap_store(core, bio, core->active, job->rec.slot);
		return DM_MAPIO_REMAPPED;
	}

	if (dmr_store_lookup(core->hidden, chunk, &slot))
		dmr_copy(core, job, dmr_store_bdev(core->hidden),
			 dmr_store_slot_sector(core->hidden, slot),
			 dmr_copy_up_done, false);
	else
		dmr_copy(core, job, core->secondary,
			 (sector_t)chunk << core->chunk_shift,
			 dmr_copy_up_done, false);
	return DM_MAPIO_SUBMITTED;
}

/* Counts a write in place in its bucket, for the merge to wait for. */
static void dmr_mark_writer(struct bio *bio, u32 chunk)
{
	dmr_pb(bio)->flags |= DMR_PB_PINNED;
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

	in_active = dmr_store_lookup(core->active, chunk, &aslot);
	in_hidden = dmr_store_lookup(core->hidden, chunk, &hslot);

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
		dmr_remap_store(core, bio, core->active, aslot);
		return DM_MAPIO_REMAPPED;
	case DMR_ROUTE_HIDDEN:
		if (bio_op(bio) == REQ_OP_WRITE)
			dmr_mark_writer(bio, chunk);
		dmr_remap_store(core, bio, core->hidden, hslot);
		return DM_MAPIO_REMAPPED;
	case DMR_ROUTE_COPY_UP:
		return dmr_top_write_new(core, bio, chunk);
	case DMR_ROUTE_FAIL:
		dmr_fail_bio(bio, -EIO);
		break;
	case DMR_ROUTE_WAIT:
		break;
	}
	return DM_MAPIO_SUBMITTED;
}

static int dmr_top_process(struct dmr_core *core, struct bio *bio)
{
	enum dmr_state state = READ_ONCE(core->state);
	u32 chunk, slot;

	if (dmr_failed(core) && dmr_bio_needs_flush(bio)) {
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}
	if (state == DMR_STATE_DONE) {
		dmr_remap_secondary(core, bio);
		return DM_MAPIO_REMAPPED;
	}
	if (op_is_flush(bio->bi_opf) && !bio_sectors(bio)) {
		if (dmr_active_clean(core, state)) {
			bio_set_dev(bio, dmr_store_bdev(core->active));
			return DM_MAPIO_REMAPPED;
		}
		if (state == DMR_STATE_RUNNING && dmr_persist_start(core, bio))
			return DM_MAPIO_SUBMITTED;
		dmr_wait_active(core, bio);
		return DM_MAPIO_SUBMITTED;
	}

	chunk = dmr_bio_chunk(core, bio);
	if (state != DMR_STATE_RUNNING)
		return dmr_top_failover(core, bio, chunk, state);
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		return dmr_top_read(core, bio, chunk);
	case REQ_OP_WRITE:
		if (dmr_store_lookup(core->active, chunk, &slot)) {
			dmr_remap_store(core, bio, core->active, slot);
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
	if (!dmr_store_lookup(core->active, first, &slot0))
		return false;
	for (chunk = first + 1; chunk <= last; chunk++)
		if (!dmr_store_lookup(core->active, chunk, &slot) ||
		    slot != slot0 + (chunk - first))
			return false;
	dmr_remap_store(core, bio, core->active, slot0);
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
	if (!dmr_cell_holder(b, chunk) &&
	    (port ? !dmr_port_needs_no_copy(core, chunk) && !b->pins :
		    !dmr_store_lookup(core->active, chunk, &slot))) {
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
			dmr_cell_release(job);
		dmr_job_free(job);
	}
}

/*
 * Gives the @n claimed jobs of a run, in chunk order from @head, consecutive
 * slots of @st.  Never sleeps: a map that has no room made ahead fails it.
 *
 * Return: 0, or -ENOSPC with nothing allocated.
 */
static int dmr_run_place(struct dmr_core *core, struct dmr_job *head,
			 struct dmr_store *st, u32 n)
{
	struct dmr_job *job;
	u32 slot;

	if (dmr_store_alloc_run(st, head->rec.chunk, n, &slot))
		return -ENOSPC;
	dmr_check_low_water(core, st);

	for (job = head; job; job = job->run_next) {
		job->store = st;
		job->rec.slot = slot++;
		if (job != head)
			job->run_head = head;
	}
	atomic_set(&head->run_left, n);
	return 0;
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
	u32 first, last, chunk;

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
	if (!dmr_run_place(core, head, st, last - first + 1))
		return head;

abandon:
	dmr_run_abandon(head);
	return NULL;
}

/*
 * A top run of whole chunks that active does not map and nobody holds is
 * written whole into consecutive slots.  Its chunks are mapped when it is in
 * (dmr_done_map()), as a single full-chunk write's is.
 */
static bool dmr_run_new(struct dmr_core *core, struct bio *bio)
{
	sector_t off = dmr_bio_offset(bio), end = off + bio_sectors(bio);
	sector_t mask = core->chunk_sectors - 1;
	struct dmr_job *head;

	if ((off & mask) || ((end & mask) && end != core->len))
		return false;
	head = dmr_run_claim(core, bio, core->active, false);
	if (!head)
		return false;
	dmr_pb(bio)->job = head;
	dmr_remap_store(core, bio, core->active, head->rec.slot);
	return true;
}

/* Ends the count of a bio that leaves the target's hands unprocessed. */
static void dmr_leave(struct dmr_core *core, struct bio *bio)
{
	dmr_pb(bio)->core = NULL;
	dmr_gate_leave(core);
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
	if (!dmr_gate_try_enter(core))
		return false;
	dmr_pb(bio)->core = core;
	return true;
}

/*
 * Maps a top bio over several chunks whole, when it can: after a failover,
 * when active maps all its chunks in a row, or when it writes whole chunks
 * that are new to active.  Returns false, with the bio not counted in
 * flight, for the caller to cut it at its first chunk's end: a bio that
 * waits (for a chunk, a persist or a checkpoint) is always one chunk's.
 */
static bool dmr_top_map_run(struct dmr_core *core, struct dm_target *ti,
			    struct bio *bio)
{
	enum dmr_state state;

	if (bio_op(bio) != REQ_OP_READ && bio_op(bio) != REQ_OP_WRITE)
		return false;
	if (dmr_failed(core))
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
 * takes them into consecutive slots of hidden, their records are persisted,
 * and then the bio goes.  Otherwise it returns DMR_NO_RUN, with the bio still
 * counted in flight, for the caller to cut it at its first chunk's end.  The
 * bio is counted already (it may sleep: no RCU read-side section).
 */
#define DMR_NO_RUN	(-1)

static int dmr_port_map_run(struct dmr_core *core, struct bio *bio)
{
	struct dmr_job *head;
	u32 first, last, chunk;

	if (READ_ONCE(core->state) != DMR_STATE_RUNNING || dmr_failed(core))
		return DMR_NO_RUN;
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
		return DMR_NO_RUN;
	head = dmr_run_claim(core, bio, core->hidden, true);
	if (!head)
		return DMR_NO_RUN;
	dmr_copy(core, head, core->secondary,
		 (sector_t)first << core->chunk_shift, dmr_cbw_copied, true);
	return DM_MAPIO_SUBMITTED;
}

/* Claims @chunk for @bio with a new job, without waiting for anything. */
static struct dmr_job *dmr_try_job(struct dmr_core *core, struct bio *bio,
				   u32 chunk)
{
	struct dmr_job *job = dmr_job_alloc(core, GFP_NOWAIT | __GFP_NOWARN);

	if (job && !dmr_try_claim(core, job, bio, chunk, true)) {
		dmr_job_free(job);
		job = NULL;
	}
	return job;
}

/*
 * With port_copy_chunks above 1, a port first touch of @chunk copies its
 * neighbours too: within the aligned group of port_copy_chunks chunks, as
 * far on each side as they need a copy and nobody holds them.  They make a
 * run into consecutive slots of hidden, as a port bio over several chunks
 * does, and a later port write to any of them needs no copy.  QEMU's
 * copy-before-write copies 64 KiB at a time; this gives ours the same copy
 * unit with chunks, and so the top's copy-ups, kept small (bench/README.md).
 * Nothing here sleeps: NULL, with nothing held, sends the bio the one-chunk
 * way, which waits for the chunk, memory or room as it needs.
 */
static struct dmr_job *dmr_port_unit_claim(struct dmr_core *core,
					   struct bio *bio, u32 chunk)
{
	u32 unit = READ_ONCE(core->port_copy_chunks), lo, hi, c, n = 1;
	struct dmr_job *head, *tail, *job;

	if (unit <= 1)
		return NULL;
	head = dmr_try_job(core, bio, chunk);
	if (!head)
		return NULL;
	lo = round_down(chunk, unit);
	hi = min_t(u64, (u64)lo + unit, core->nr_chunks) - 1;
	for (tail = head, c = chunk + 1; c <= hi; c++, n++) {
		job = dmr_try_job(core, bio, c);
		if (!job)
			break;
		tail->run_next = job;
		tail = job;
	}
	for (c = chunk; c-- > lo; n++) {
		job = dmr_try_job(core, bio, c);
		if (!job)
			break;
		job->run_next = head;
		head = job;
	}
	if (dmr_run_place(core, head, core->hidden, n)) {
		dmr_run_abandon(head);
		return NULL;
	}
	return head;
}

static int dmr_port_write_new(struct dmr_core *core, struct bio *bio,
			      u32 chunk)
{
	enum dmr_claim claim;
	struct dmr_job *job;
	int r;

	/* A copy into hidden needs a persist. */
	if (dmr_failed(core)) {
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}
	job = dmr_port_unit_claim(core, bio, chunk);
	if (job) {
		dmr_copy(core, job, core->secondary,
			 (sector_t)job->rec.chunk << core->chunk_shift,
			 dmr_cbw_copied, true);
		return DM_MAPIO_SUBMITTED;
	}
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

	r = dmr_start_job(core, job, core->hidden);
	if (r) {
		dmr_set_error(core, r);
		dmr_job_fail(job, r);
		return DM_MAPIO_SUBMITTED;
	}
	dmr_copy(core, job, core->secondary, (sector_t)chunk << core->chunk_shift,
		 dmr_cbw_copied, true);
	return DM_MAPIO_SUBMITTED;
}

static int dmr_port_process(struct dmr_core *core, struct bio *bio)
{
	u32 chunk;

	if (dmr_failed(core) && dmr_bio_needs_flush(bio)) {
		dmr_fail_bio(bio, -EIO);
		return DM_MAPIO_SUBMITTED;
	}
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
/* Counts a bio in flight, or parks it until the gate opens. */
static bool dmr_enter(struct dmr_core *core, struct bio *bio)
{
	if (!dmr_gate_enter(core, bio))
		return false;
	dmr_pb(bio)->core = core;
	return true;
}

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

/**
 * dmr_io_end_io() - the end of a top or port bio
 * @ti: its target
 * @bio: the bio
 * @error: its status
 *
 * Return: a DM_ENDIO_* value.
 */
int dmr_io_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct dmr_bio *pb = dmr_pb(bio);
	struct dmr_core *core = pb->core;

	if (!core)
		return DM_ENDIO_DONE;

	/* What was written before it may be lost: no later FLUSH may pass. */
	if (unlikely(*error) && (bio->bi_opf & REQ_PREFLUSH))
		dmr_fail(core, blk_status_to_errno(*error), "a flush");

	/*
	 * A whole-chunk write is mapped here when it ends in process context
	 * (a RAM disk ends its bios in their submitter's); from an interrupt,
	 * by a worker.  The hop cost a RAM disk's first touch 2.6x at QD1
	 * (bench/experiments/hop.sh).
	 */
	if (pb->job) {
		if (!in_task()) {
			llist_add(&pb->job->done, &core->done_jobs);
			queue_work(core->wq, &core->done_work);
			return DM_ENDIO_INCOMPLETE;
		}
		dmr_done_map(core, bio, error);
	}
	if (!(pb->flags & (DMR_PB_PORT | DMR_PB_PERSISTED)) && !*error &&
	    bio_op(bio) == REQ_OP_WRITE && (bio->bi_opf & REQ_FUA) &&
	    READ_ONCE(core->state) != DMR_STATE_DONE &&
	    !dmr_active_clean(core, READ_ONCE(core->state))) {
		dmr_wait_active(core, bio);
		return DM_ENDIO_INCOMPLETE;
	}
	if (pb->flags & DMR_PB_PINNED) {
		pb->flags &= ~DMR_PB_PINNED;
		dmr_unpin(core, pb->chunk);
	}
	pb->core = NULL;
	dmr_gate_leave(core);
	return DM_ENDIO_DONE;
}

/* ---- the target's entry points --------------------------------------------------- */

/**
 * dmr_io_map_top() - map a bio of the top device
 * @core: the session's loaded state
 * @ti: the top's target
 * @bio: the bio
 *
 * Return: a DM_MAPIO_* value.
 */
int dmr_io_map_top(struct dmr_core *core, struct dm_target *ti,
		   struct bio *bio)
{
	if (dmr_spans_chunks(core, ti, bio)) {
		if (dmr_top_map_run(core, ti, bio))
			return DM_MAPIO_REMAPPED;
		dm_accept_partial_bio(bio, dmr_first_chunk_left(core, ti, bio));
	}
	if (!dmr_start_bio(core, ti, bio, 0))
		return DM_MAPIO_SUBMITTED;
	return dmr_process(core, bio);
}

/**
 * dmr_io_map_port() - map a bio of a port
 * @ses: the port's session
 * @ti: the port's target
 * @bio: the bio
 * @secondary: the port's secondary device
 *
 * The port finds the session's loaded state under RCU and counts its bio in
 * flight before it leaves the read-side section, so the state outlives it.
 * Without loaded stores, reads pass and writes fail.
 *
 * Return: a DM_MAPIO_* value.
 */
int dmr_io_map_port(struct dmr_session *ses, struct dm_target *ti,
		    struct bio *bio, struct block_device *secondary)
{
	struct dmr_core *core;
	bool entered = false, run = false;
	int r;

	rcu_read_lock();
	core = dmr_session_core_rcu(ses);
	/* Its chunk size is the top's, whatever it was when the port came. */
	if (core && bio_op(bio) == REQ_OP_WRITE &&
	    dmr_spans_chunks(core, ti, bio)) {
		run = dmr_try_enter(core, ti, bio, DMR_PB_PORT);
		/* A bio that may be parked is one chunk's. */
		if (!run)
			dm_accept_partial_bio(bio,
					      dmr_first_chunk_left(core, ti, bio));
	}
	if (core && !run)
		entered = dmr_start_bio(core, ti, bio, DMR_PB_PORT);
	rcu_read_unlock();

	/* Counted in flight, the core stays while the bio is processed. */
	if (run) {
		r = dmr_port_map_run(core, bio);
		if (r != DMR_NO_RUN)
			return r;
		dm_accept_partial_bio(bio, dmr_first_chunk_left(core, ti, bio));
		return dmr_process(core, bio);
	}
	if (core)
		return entered ? dmr_process(core, bio) : DM_MAPIO_SUBMITTED;

	memset(dmr_pb(bio), 0, sizeof(struct dmr_bio));
	if (bio_op(bio) == REQ_OP_WRITE && bio_sectors(bio))
		return DM_MAPIO_KILL;
	bio_set_dev(bio, secondary);
	bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
}

/**
 * dmr_io_per_bio_data_size() - the per-bio data the top and the port need
 *
 * Return: its size, for ti->per_io_data_size.
 */
size_t dmr_io_per_bio_data_size(void)
{
	return sizeof(struct dmr_bio);
}

/**
 * dmr_io_load() - load a session for a secondary table
 * @a: the table's devices
 * @error: set to the reason on failure
 *
 * Loads the core, sets up this layer's works and the failover's commit
 * (paused until the top resumes).
 *
 * Return: the core, or an ERR_PTR with @error set.
 */
struct dmr_core *dmr_io_load(const struct dmr_core_args *a, char **error)
{
	struct dmr_core *core;
	int r;

	core = dmr_core_load(a, error);
	if (IS_ERR(core))
		return core;
	INIT_WORK(&core->defer_work, dmr_defer_work);
	INIT_WORK(&core->hidden_persist_work, dmr_hidden_persist_work);
	INIT_WORK(&core->done_work, dmr_done_work);
	r = dmr_commit_init(core);
	if (r) {
		*error = "Cannot plan the failover's commit";
		dmr_core_unload(core);
		return ERR_PTR(r);
	}
	return core;
}

/**
 * dmr_io_unload() - unload a session's stores
 * @core: the session's loaded state; no top bio is in flight, and no port
 *        bio sees it any more
 */
void dmr_io_unload(struct dmr_core *core)
{
	dmr_commit_exit(core);
	dmr_core_unload(core);
}
