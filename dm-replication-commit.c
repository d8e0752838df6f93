// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: the merge-down commit that a failover runs.
 *
 * On failover a workqueue copies every chunk of active, and every chunk of
 * hidden that is not in active, into the secondary device while the VM keeps
 * running on the top device.
 *
 * The plan.  The chunks either store holds, sorted and without duplicates,
 * from the durable cursor on.  The stores do not change while the session
 * fails over (the port is closed and top writes never map new chunks), so the
 * same plan can be made again after a crash.
 *
 * Extents.  The plan is copied in order, in extents of consecutive chunks
 * that sit in consecutive slots of one store (active wins), up to 1 MiB each
 * and up to commit_depth extents at a time: a read of the extent into a
 * buffer of the commit's, then a write of it, one bio each.
 *
 * The cursor.  A chunk number below which every chunk of the plan is in the
 * secondary device.  It is written into hidden's header after a flush of the
 * secondary device, every few extents; a crash resumes from it.
 *
 * Top I/O meanwhile.  Reads of a chunk below the durable cursor go to the
 * secondary device, others to the store that holds the chunk, so reads never
 * wait.  Writes:
 *  - below the durable cursor, or to a chunk in no store: the secondary
 *    device;
 *  - to a chunk of a claimed extent (between the durable cursor and
 *    @started): they wait until the cursor covering the chunk is durable.  A
 *    write in place after the copy would be lost; a write to the secondary
 *    device before the cursor is durable would be overwritten by a resumed
 *    merge after a crash;
 *  - to a chunk not reached yet: in place into its store's slot, counted as a
 *    writer of the chunk's bucket; an extent starts its copy only when the
 *    buckets of its chunks have no writers, so no copy misses a write.
 *
 * It calls the core (dm-replication-core.c) and the stores only.
 */
#include <linux/blkdev.h>
#include <linux/dm-kcopyd.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "dm-replication-commit.h"
#include "dm-replication-core.h"
#include "dm-replication-test.h"

/* How long a claimed extent's chunks may wait for a durable cursor. */
#define DMR_CURSOR_PERIOD	(HZ / 4)

/*
 * The commit of a failing-over session.
 *
 * The plan is the sorted list of chunks held by either store at or above the
 * durable cursor.  It is copied in extents, in plan order; chunks below
 * @started belong to extents already claimed, chunks below @durable are in
 * the secondary device and the cursor saying so is on disk.
 */
struct dmr_commit {
	struct dmr_core *core;
	spinlock_t lock;		/* the fields below but plan and works */
	u32 *plan;			/* chunks to merge, ascending */
	u32 nr_plan;
	u32 next;			/* plan index of the next extent */
	u64 durable;			/* the cursor on disk: routes writes */
	u64 started;			/* chunks below are claimed by extents */
	struct list_head extents;	/* claimed and not yet durable */
	struct dmr_extent *blocked;	/* claimed, waiting for writers */
	unsigned int claimed;		/* extents claimed, not yet copied */
	unsigned int depth;		/* extents in flight at most */
	u32 nr_copied;			/* plan chunks in copied extents */
	u32 nr_durable;			/* plan chunks below the cursor */
	int err;			/* the first error: the commit stops */
	bool paused;			/* the top is suspended */
	bool wait_writers;		/* @blocked waits for a bucket */
	struct bio_list waiters;	/* writes to chunks in [durable, started) */
	wait_queue_head_t idle;		/* no extent is copying */
	unsigned int copying;
	unsigned long since;		/* jiffies at the last cursor write */
	unsigned long start;		/* jiffies at the start */
	struct work_struct work;	/* claims and copies extents */
	struct work_struct cursor_work;	/* makes progress durable */
	struct list_head buffers;	/* copy buffers not in use */
};

#define DMR_COPY_PAGES	(DMR_EXTENT_SECTORS >> (PAGE_SHIFT - SECTOR_SHIFT))
#define DMR_COPY_ORDER	ilog2(DMR_COPY_PAGES)

/*
 * A copy buffer: an extent read into its pages, then written from them.
 * Made when a copy finds none free, kept until the commit ends; the pages
 * come from one block when the allocator has one (fewer, larger segments).
 */
struct dmr_copy {
	struct list_head list;		/* on the free buffers */
	struct dmr_extent *ext;		/* the extent being copied */
	struct work_struct work;	/* writes after the read */
	blk_status_t status;
	struct bio bio;
	struct bio_vec bvec[DMR_COPY_PAGES];
	struct page *pages[DMR_COPY_PAGES];
};

/* ---------------------------------------------------------------------------
 * Pure logic: planning, extents, routes and the cursor.  Tested by KUnit.
 */

/**
 * dmr_plan_finish() - make the plan from the chunks both stores hold
 * @chunks: the chunks of active and of hidden, in any order; sorted in place
 * @n: how many
 * @cursor: chunks below it are merged already
 *
 * Return: the plan's length: @chunks then holds the chunks at or above
 * @cursor, ascending, each once.
 */
u32 dmr_plan_finish(u32 *chunks, u32 n, u64 cursor)
{
	u32 i = 0, out;

	n = dmr_sort_unique(chunks, n);
	while (i < n && chunks[i] < cursor)
		i++;
	for (out = 0; i < n; i++)
		chunks[out++] = chunks[i];
	return out;
}

/**
 * dmr_plan_extent() - how many plan chunks the next extent copies
 * @plan: the plan
 * @n: its length
 * @i: index of the extent's first chunk, below @n
 * @max: the most chunks an extent may hold, at least 1
 * @source: where a chunk is copied from (active wins over hidden)
 * @ctx: for @source
 *
 * An extent is a run of consecutive chunks held in consecutive slots of one
 * store, so that one copy moves it.
 *
 * Return: the extent's length in chunks, at least 1.
 */
u32 dmr_plan_extent(const u32 *plan, u32 n, u32 i, u32 max,
		    dmr_source_fn source, void *ctx)
{
	enum dmr_role store, s;
	u32 slot, sl, len = 1;

	if (!source(ctx, plan[i], &store, &slot))
		return 1;
	while (i + len < n && len < max &&
	       plan[i + len] == plan[i] + len &&
	       source(ctx, plan[i + len], &s, &sl) &&
	       s == store && sl == slot + len)
		len++;
	return len;
}

/**
 * dmr_route_read() - where a top read goes while failing over
 * @chunk: the read's chunk
 * @durable: the durable cursor
 * @in_active: active holds the chunk
 * @in_hidden: hidden holds the chunk
 *
 * Return: %DMR_ROUTE_SECONDARY, %DMR_ROUTE_ACTIVE or %DMR_ROUTE_HIDDEN.
 */
enum dmr_route dmr_route_read(u64 chunk, u64 durable, bool in_active,
			      bool in_hidden)
{
	if (chunk < durable)
		return DMR_ROUTE_SECONDARY;
	if (in_active)
		return DMR_ROUTE_ACTIVE;
	if (in_hidden)
		return DMR_ROUTE_HIDDEN;
	return DMR_ROUTE_SECONDARY;
}

/**
 * dmr_route_write() - where a top write goes while failing over
 * @state: %DMR_STATE_FAILOVER or %DMR_STATE_FAILOVER_FAILED
 * @chunk: the write's chunk
 * @durable: the durable cursor
 * @started: chunks below it belong to claimed extents
 * @in_active: active holds the chunk
 * @in_hidden: hidden holds the chunk
 *
 * While the merge runs, a chunk it has claimed waits, one it has not reached
 * is written in place.  After a failure QEMU's rule holds: a chunk a store
 * holds is written in active (copied up from hidden when only hidden holds
 * it), any other chunk in the secondary device.
 *
 * Return: the route.
 */
enum dmr_route dmr_route_write(enum dmr_state state, u64 chunk, u64 durable,
			       u64 started, bool in_active, bool in_hidden)
{
	if (chunk < durable || (!in_active && !in_hidden))
		return DMR_ROUTE_SECONDARY;
	if (state == DMR_STATE_FAILOVER_FAILED)
		return in_active ? DMR_ROUTE_ACTIVE : DMR_ROUTE_COPY_UP;
	if (chunk < started)
		return DMR_ROUTE_WAIT;
	return in_active ? DMR_ROUTE_ACTIVE : DMR_ROUTE_HIDDEN;
}

/**
 * dmr_commit_cursor() - how far the merge has copied without a gap
 * @extents: the claimed extents, in plan order
 * @started: chunks below it belong to claimed extents
 * @nr_chunks: set to the chunks of the copied extents at the head
 * @nr_extents: set to the number of those extents
 *
 * Return: the first chunk of the first extent not copied, or @started when
 * every claimed extent is copied: the cursor the merge may make durable.
 */
u64 dmr_commit_cursor(const struct list_head *extents, u64 started,
		      u32 *nr_chunks, unsigned int *nr_extents)
{
	const struct dmr_extent *ext;

	*nr_chunks = 0;
	*nr_extents = 0;
	list_for_each_entry(ext, extents, list) {
		if (!ext->done)
			return ext->first;
		*nr_chunks += ext->nr;
		(*nr_extents)++;
	}
	return started;
}

/* ---------------------------------------------------------------------------
 * The merge.
 */

static struct dmr_store *dmr_source_store(struct dmr_core *core,
					  enum dmr_role store)
{
	return store == DMR_ROLE_ACTIVE ? core->active : core->hidden;
}

static bool dmr_core_source(void *ctx, u32 chunk, enum dmr_role *store,
			    u32 *slot)
{
	struct dmr_core *core = ctx;

	if (dmr_store_lookup(core->active, chunk, slot)) {
		*store = DMR_ROLE_ACTIVE;
		return true;
	}
	if (dmr_store_lookup(core->hidden, chunk, slot)) {
		*store = DMR_ROLE_HIDDEN;
		return true;
	}
	return false;
}

/* Chunks of an extent, so that it fits the device's end. */
static sector_t dmr_extent_sectors(struct dmr_core *core,
				   struct dmr_extent *ext)
{
	sector_t start = (sector_t)ext->first << core->chunk_shift;
	sector_t len = (sector_t)ext->nr << core->chunk_shift;

	return min_t(sector_t, len, core->len - start);
}

/*
 * Builds the plan from both stores' maps, which do not change meanwhile:
 * the session is failing over (or failed to, or nothing runs on it yet).
 */
static int dmr_commit_plan(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	u32 na = dmr_store_nr_mapped(core->active);
	u32 nh = dmr_store_nr_mapped(core->hidden);
	unsigned int noio;
	u32 *chunks, got;
	int r;

	noio = memalloc_noio_save();
	chunks = kvmalloc_array(max(na + nh, 1U), sizeof(*chunks), GFP_KERNEL);
	memalloc_noio_restore(noio);
	if (!chunks)
		return -ENOMEM;

	r = dmr_store_collect(core->active, chunks, na, &got);
	if (!r) {
		r = dmr_store_collect(core->hidden, chunks + got, nh, &nh);
		got += nh;
	}
	if (r) {
		kvfree(chunks);
		return r;
	}

	got = dmr_plan_finish(chunks, got, m->durable);
	spin_lock_irq(&m->lock);
	swap(m->plan, chunks);
	m->nr_plan = got;
	m->next = 0;
	m->started = m->durable;
	m->nr_copied = 0;
	m->nr_durable = 0;
	m->err = 0;
	spin_unlock_irq(&m->lock);
	kvfree(chunks);
	return 0;
}

/* Frees the extents at the head of the list that the cursor has passed. */
static void dmr_free_extents(struct list_head *list)
{
	struct dmr_extent *ext, *tmp;

	list_for_each_entry_safe(ext, tmp, list, list) {
		list_del(&ext->list);
		kfree(ext);
	}
}

/* Claims the next extent of the plan, or returns NULL when it may not. */
static struct dmr_extent *dmr_claim_extent(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	u32 max = max(DMR_EXTENT_SECTORS >> core->chunk_shift, 1U);
	struct dmr_extent *ext;

	ext = kzalloc(sizeof(*ext), GFP_NOIO);
	if (!ext)
		return ERR_PTR(-ENOMEM);

	spin_lock_irq(&m->lock);
	if (m->paused || m->err || m->next >= m->nr_plan ||
	    m->claimed >= m->depth) {
		spin_unlock_irq(&m->lock);
		kfree(ext);
		return NULL;
	}
	ext->core = core;
	ext->first = m->plan[m->next];
	ext->nr = dmr_plan_extent(m->plan, m->nr_plan, m->next, max,
				  dmr_core_source, core);
	if (!dmr_core_source(core, ext->first, &ext->store, &ext->slot)) {
		/* Cannot happen: the stores hold every chunk of the plan. */
		spin_unlock_irq(&m->lock);
		kfree(ext);
		return ERR_PTR(-EIO);
	}
	m->next += ext->nr;
	m->started = (u64)ext->first + ext->nr;
	m->claimed++;
	list_add_tail(&ext->list, &m->extents);
	spin_unlock_irq(&m->lock);
	return ext;
}

/* Does a bucket of the extent's chunks count writers? */
static bool dmr_extent_has_writers(struct dmr_core *core,
				   struct dmr_extent *ext)
{
	bool busy = false;
	u32 i;

	for (i = 0; i < ext->nr && !busy; i++) {
		struct dmr_bucket *b = dmr_bucket(core, ext->first + i);

		spin_lock_irq(&b->lock);
		busy = b->pins;
		spin_unlock_irq(&b->lock);
	}
	return busy;
}

static void dmr_commit_fail(struct dmr_core *core, int err)
{
	struct dmr_commit *m = core->commit;
	unsigned long flags;

	spin_lock_irqsave(&m->lock, flags);
	if (!m->err)
		m->err = err;
	spin_unlock_irqrestore(&m->lock, flags);
	queue_work(core->wq, &m->cursor_work);
}

static void dmr_extent_copied(int read_err, unsigned long write_err,
			      void *context)
{
	struct dmr_extent *ext = context;
	struct dmr_core *core = ext->core;
	struct dmr_commit *m = core->commit;
	unsigned long flags;

	spin_lock_irqsave(&m->lock, flags);
	if (read_err || write_err) {
		if (!m->err)
			m->err = -EIO;
	} else {
		ext->done = true;
		m->nr_copied += ext->nr;
	}
	m->claimed--;
	m->copying--;
	/*
	 * Under the lock: dmr_commit_pause() reads copying under it too, so once
	 * it sees none, this callback touches neither @m nor @core again, and
	 * dmr_commit_exit() may free them.
	 */
	queue_work(core->wq, &m->work);
	queue_work(core->wq, &m->cursor_work);
	wake_up(&m->idle);
	spin_unlock_irqrestore(&m->lock, flags);
}

static void dmr_copy_free(struct dmr_copy *c)
{
	unsigned int i;

	for (i = 0; i < DMR_COPY_PAGES && c->pages[i]; i++)
		__free_page(c->pages[i]);
	kfree(c);
}

static void dmr_free_buffers(struct dmr_commit *m)
{
	struct dmr_copy *c, *tmp;
	LIST_HEAD(list);

	spin_lock_irq(&m->lock);
	list_splice_init(&m->buffers, &list);
	spin_unlock_irq(&m->lock);
	list_for_each_entry_safe(c, tmp, &list, list)
		dmr_copy_free(c);
}

static void dmr_copy_write(struct work_struct *w);

/* A free copy buffer, or a new one; NULL when memory is short. */
static struct dmr_copy *dmr_copy_get(struct dmr_commit *m)
{
	struct dmr_copy *c;
	struct page *block;
	unsigned int i;

	spin_lock_irq(&m->lock);
	c = list_first_entry_or_null(&m->buffers, struct dmr_copy, list);
	if (c)
		list_del(&c->list);
	spin_unlock_irq(&m->lock);
	if (c)
		return c;

	c = kzalloc(sizeof(*c), GFP_NOIO);
	if (!c)
		return NULL;
	INIT_WORK(&c->work, dmr_copy_write);
	block = alloc_pages(GFP_NOIO | __GFP_NORETRY | __GFP_NOWARN,
			    DMR_COPY_ORDER);
	if (block) {
		split_page(block, DMR_COPY_ORDER);
		for (i = 0; i < DMR_COPY_PAGES; i++)
			c->pages[i] = block + i;
		return c;
	}
	for (i = 0; i < DMR_COPY_PAGES; i++) {
		c->pages[i] = alloc_page(GFP_NOIO);
		if (!c->pages[i]) {
			dmr_copy_free(c);
			return NULL;
		}
	}
	return c;
}

/* Ends a copy: the buffer goes back before the extent's end is told. */
static void dmr_copy_end(struct dmr_copy *c, int read_err,
			 unsigned long write_err)
{
	struct dmr_extent *ext = c->ext;
	struct dmr_commit *m = ext->core->commit;
	unsigned long flags;

	spin_lock_irqsave(&m->lock, flags);
	list_add(&c->list, &m->buffers);
	spin_unlock_irqrestore(&m->lock, flags);
	dmr_extent_copied(read_err, write_err, ext);
}

static void dmr_copy_bio(struct dmr_copy *c, struct block_device *bdev,
			 sector_t sector, blk_opf_t opf, bio_end_io_t *end)
{
	struct dmr_core *core = c->ext->core;

	bio_init(&c->bio, bdev, c->bvec, DMR_COPY_PAGES, opf);
	c->bio.bi_iter.bi_sector = sector;
	c->bio.bi_end_io = end;
	c->bio.bi_private = c;
	dmr_submit_pages(&c->bio, c->pages,
			 dmr_extent_sectors(core, c->ext) << SECTOR_SHIFT);
}

static void dmr_copy_written(struct bio *bio)
{
	struct dmr_copy *c = bio->bi_private;
	blk_status_t status = bio->bi_status;

	bio_uninit(bio);
	dmr_copy_end(c, 0, status ? 1 : 0);
}

/* 2. The read ended: write the buffer to the secondary device. */
static void dmr_copy_write(struct work_struct *w)
{
	struct dmr_copy *c = container_of(w, struct dmr_copy, work);
	struct dmr_core *core = c->ext->core;

	if (c->status) {
		dmr_copy_end(c, 1, 0);
		return;
	}
	dmr_copy_bio(c, core->secondary,
		     (sector_t)c->ext->first << core->chunk_shift,
		     REQ_OP_WRITE, dmr_copy_written);
}

static void dmr_copy_read(struct bio *bio)
{
	struct dmr_copy *c = bio->bi_private;

	c->status = bio->bi_status;
	bio_uninit(bio);
	/* A bio may end in interrupt context: the write is issued by a worker. */
	queue_work(c->ext->core->wq, &c->work);
}

/*
 * Copies an extent:
 *  1. reads it from its store into a copy buffer;
 *  2. writes the buffer to the secondary device (dmr_copy_write());
 *  3. gives the buffer back and tells the commit (dmr_extent_copied()).
 * Without a buffer (memory short) dm-kcopyd copies it.
 */
static void dmr_copy_extent(struct dmr_core *core, struct dmr_extent *ext)
{
	struct dmr_store *st = dmr_source_store(core, ext->store);
	sector_t len = dmr_extent_sectors(core, ext);
	struct dm_io_region src = {
		.bdev = dmr_store_bdev(st),
		.sector = dmr_store_slot_sector(st, ext->slot),
		.count = len,
	};
	struct dm_io_region dst = {
		.bdev = core->secondary,
		.sector = (sector_t)ext->first << core->chunk_shift,
		.count = len,
	};
	struct dmr_copy *c;

	spin_lock_irq(&core->commit->lock);
	core->commit->copying++;
	spin_unlock_irq(&core->commit->lock);
	c = dmr_copy_get(core->commit);
	if (!c) {
		dm_kcopyd_copy(core->kc, &src, 1, &dst, 0, dmr_extent_copied,
			       ext);
		return;
	}
	c->ext = ext;
	dmr_copy_bio(c, src.bdev, src.sector, REQ_OP_READ, dmr_copy_read);	/* 1 */
}

/* Gives back a claimed extent that never started: paused or failed. */
static void dmr_unclaim_blocked(struct dmr_commit *m)
{
	struct dmr_extent *ext;

	spin_lock_irq(&m->lock);
	ext = m->blocked;
	m->blocked = NULL;
	list_del(&ext->list);
	m->claimed--;
	/* It was the last claimed: its chunks are not reached again. */
	m->next -= ext->nr;
	m->started = ext->first;
	spin_unlock_irq(&m->lock);
	kfree(ext);
	wake_up(&m->idle);
}

static void dmr_set_blocked(struct dmr_commit *m, struct dmr_extent *ext)
{
	spin_lock_irq(&m->lock);
	m->blocked = ext;
	spin_unlock_irq(&m->lock);
}

static bool dmr_commit_stopped(struct dmr_commit *m)
{
	bool stopped;

	spin_lock_irq(&m->lock);
	stopped = m->paused || m->err;
	spin_unlock_irq(&m->lock);
	return stopped;
}

/*
 * Claims extents and starts their copies, up to the depth.  An extent whose
 * buckets have writers waits for them: the last writer's end queues this
 * work again (see dmr_commit_writer_done()).
 */
static void dmr_commit_work(struct work_struct *w)
{
	struct dmr_commit *m = container_of(w, struct dmr_commit, work);
	struct dmr_core *core = m->core;
	struct dmr_extent *ext;

	if (READ_ONCE(core->state) != DMR_STATE_FAILOVER || dmr_failed(core))
		return;
	for (;;) {
		if (m->blocked && dmr_commit_stopped(m)) {
			dmr_unclaim_blocked(m);
			queue_work(core->wq, &m->cursor_work);
		}
		ext = m->blocked;
		if (!ext) {
			ext = dmr_claim_extent(core);
			if (IS_ERR(ext)) {
				dmr_commit_fail(core, PTR_ERR(ext));
				return;
			}
			if (!ext)
				return;
		}
		if (dmr_extent_has_writers(core, ext)) {
			dmr_set_blocked(m, ext);
			/* Seen by a writer that ends after our check below. */
			WRITE_ONCE(m->wait_writers, true);
			if (dmr_extent_has_writers(core, ext))
				return;
		}
		WRITE_ONCE(m->wait_writers, false);
		dmr_set_blocked(m, NULL);
		dmr_copy_extent(core, ext);
	}
}

/* Lets the top's writes that waited for the cursor go, routed again. */
static void dmr_release_waiters(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	struct bio_list bios;

	spin_lock_irq(&m->lock);
	bios = m->waiters;
	bio_list_init(&m->waiters);
	spin_unlock_irq(&m->lock);
	dmr_defer_bios(core, &bios);
}

/* Writes the cursor into hidden's header, after the data it covers. */
static int dmr_write_cursor(struct dmr_core *core, u64 cursor)
{
	int r;

	r = blkdev_issue_flush(core->secondary);
	if (r) {
		dmr_fail(core, r, "flush of the secondary device");
		return r;
	}
	mutex_lock(&core->state_lock);
	r = dmr_core_new_generation(core, core->state, core->epoch, cursor,
				    DMR_GEN_HIDDEN_ONLY);
	mutex_unlock(&core->state_lock);
	return r;
}

/*
 * The merge failed: the state becomes failover_failed (durably when the
 * stores can still be written), the error is recorded, waiting writes are
 * routed by the failed state's rule.
 */
static void dmr_commit_failed(struct dmr_core *core, int err)
{
	struct dmr_commit *m = core->commit;
	int r;

	/* The error first: a status that shows the state shows it too. */
	dmr_set_error(core, err);
	mutex_lock(&core->state_lock);
	spin_lock_irq(&m->lock);
	dmr_core_set_state(core, DMR_STATE_FAILOVER_FAILED);
	m->nr_copied = m->nr_durable;
	spin_unlock_irq(&m->lock);
	r = dmr_core_new_generation(core, DMR_STATE_FAILOVER_FAILED,
				    core->epoch, core->cursor, 0);
	mutex_unlock(&core->state_lock);

	dmr_free_buffers(m);
	dmr_release_waiters(core);
	dmr_raise_event(core);
	DMERR("%s: failover failed: error %d at chunk %llu; send failover to retry",
	      dmr_core_name(core), err, (unsigned long long)m->durable);
	if (r)
		DMERR("%s: cannot record the failed state: %d",
		      dmr_core_name(core), r);
}

/* Every chunk is in the secondary device: empty the stores, state done. */
static void dmr_commit_done(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	u32 nr = m->nr_plan, *plan;
	int r;

	mutex_lock(&core->state_lock);
	r = dmr_new_epoch(core, DMR_STATE_DONE);
	mutex_unlock(&core->state_lock);
	/* Past its commit point the new epoch holds, even with an error. */
	if (READ_ONCE(core->state) != DMR_STATE_DONE) {
		dmr_commit_fail(core, r);
		return;
	}
	spin_lock_irq(&m->lock);
	plan = m->plan;
	m->plan = NULL;
	m->nr_plan = 0;
	m->nr_copied = 0;
	m->nr_durable = 0;
	m->next = 0;
	m->durable = 0;
	m->started = 0;
	spin_unlock_irq(&m->lock);
	kvfree(plan);		/* may be vmalloc'ed: not under the lock */
	dmr_free_buffers(m);
	DMINFO("%s: failover done: %u chunks in %u ms", dmr_core_name(core), nr,
	       jiffies_to_msecs(jiffies - m->start));
}

/*
 * Makes the merge's progress durable: when waiting writes need it, when
 * nothing is copying, or every quarter of a second.  Then finishes the
 * merge, or fails it.
 */
static void dmr_cursor_work(struct work_struct *w)
{
	struct dmr_commit *m = container_of(w, struct dmr_commit, cursor_work);
	struct dmr_core *core = m->core;
	unsigned int nr_ext, i;
	LIST_HEAD(passed);
	bool due, finished;
	u64 cursor;
	u32 nr;
	int err, r = 0;

	if (READ_ONCE(core->state) != DMR_STATE_FAILOVER)
		return;
	if (dmr_failed(core)) {
		/* No cursor moves again: the waiting writes fail. */
		dmr_release_waiters(core);
		return;
	}

	spin_lock_irq(&m->lock);
	cursor = dmr_commit_cursor(&m->extents, m->started, &nr, &nr_ext);
	due = !bio_list_empty(&m->waiters) || !m->copying ||
	      time_after_eq(jiffies, m->since + DMR_CURSOR_PERIOD);
	err = m->err;
	spin_unlock_irq(&m->lock);

	/*
	 * After a failed copy the commit stops where the disk's cursor is: the
	 * failed device has the copies since, and a retry copies them again.
	 */
	if (cursor > m->durable && due && !err) {
		r = dmr_write_cursor(core, cursor);
		if (r) {
			/* The session failed: the merge stays where it is. */
			dmr_release_waiters(core);
			return;
		}
		/* Writes to the chunks below may go in place now. */
		spin_lock_irq(&m->lock);
		m->durable = cursor;
		m->nr_durable += nr;
		for (i = 0; i < nr_ext; i++)
			list_move_tail(m->extents.next, &passed);
		spin_unlock_irq(&m->lock);
		dmr_free_extents(&passed);
		m->since = jiffies;
		dmr_release_waiters(core);
	}

	spin_lock_irq(&m->lock);
	err = m->err;
	finished = !err && m->next >= m->nr_plan && list_empty(&m->extents);
	if (err && (m->copying || m->blocked)) {
		/* Fail once nothing copies; the merge work gives blocked back. */
		spin_unlock_irq(&m->lock);
		queue_work(core->wq, &m->work);
		return;
	}
	spin_unlock_irq(&m->lock);

	if (err) {
		spin_lock_irq(&m->lock);
		list_splice_init(&m->extents, &passed);
		spin_unlock_irq(&m->lock);
		dmr_free_extents(&passed);
		dmr_commit_failed(core, err);
	} else if (finished) {
		dmr_commit_done(core);
	}
}

/* ---------------------------------------------------------------------------
 * The interface to the data path and the target.
 */

/**
 * dmr_commit_init() - set up the commit of a session just loaded
 * @core: the session's loaded state, with its state and cursor from disk
 *
 * The commit starts paused: the top's resume lets it run.  In state failover
 * it then resumes from the durable cursor; in failover_failed the plan only
 * gives the status its count.
 *
 * Return: 0 or a negative errno.
 */
int dmr_commit_init(struct dmr_core *core)
{
	struct dmr_commit *m = kzalloc(sizeof(*m), GFP_KERNEL);
	int r;

	if (!m)
		return -ENOMEM;
	m->core = core;
	spin_lock_init(&m->lock);
	INIT_LIST_HEAD(&m->extents);
	bio_list_init(&m->waiters);
	init_waitqueue_head(&m->idle);
	INIT_WORK(&m->work, dmr_commit_work);
	INIT_WORK(&m->cursor_work, dmr_cursor_work);
	INIT_LIST_HEAD(&m->buffers);
	m->depth = DMR_COMMIT_DEPTH_DEFAULT;
	m->paused = true;
	m->durable = core->cursor;
	core->commit = m;

	if (core->state != DMR_STATE_FAILOVER &&
	    core->state != DMR_STATE_FAILOVER_FAILED)
		return 0;
	r = dmr_commit_plan(core);
	if (r) {
		core->commit = NULL;
		kfree(m);
		return r;
	}
	if (core->state == DMR_STATE_FAILOVER) {
		m->start = jiffies;
		m->since = jiffies;
		DMINFO("%s: failover: committing %u chunks from chunk %llu",
		       dmr_core_name(core), m->nr_plan,
		       (unsigned long long)m->durable);
	}
	return 0;
}

/**
 * dmr_commit_exit() - stop the commit and free it
 * @core: the session's loaded state; no top bio is in flight
 *
 * Copies in flight finish and their progress is made durable; a crash or a
 * later load resumes from there.
 */
void dmr_commit_exit(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	LIST_HEAD(list);

	if (!m)
		return;
	dmr_commit_pause(core);
	cancel_work_sync(&m->work);
	cancel_work_sync(&m->cursor_work);
	if (m->blocked)
		dmr_unclaim_blocked(m);
	list_splice_init(&m->extents, &list);
	dmr_free_extents(&list);
	dmr_free_buffers(m);
	kvfree(m->plan);
	core->commit = NULL;
	kfree(m);
}

/**
 * dmr_commit_start() - begin (or retry) the merge-down commit
 * @core: the session's loaded state, in state running or failover_failed;
 *        the caller holds its state_lock
 *
 * Steps:
 *  1. persist active before closing the gate, so that the persist inside
 *     the freeze has only the records of the writes that came meanwhile;
 *  2. drain the top and the port, persist active's remainder;
 *  3. a new generation of the header in state failover (hidden's is the
 *     commit point; active's from a worker);
 *  4. let I/O go: the stores no longer change (the port is closed, top
 *     writes map no new chunks), so the rest need not stall the top: until
 *     the plan is made nothing is claimed, and top writes to stored chunks
 *     go in place;
 *  5. plan the merge and start it.
 *
 * Return: 0 when the commit has started; a negative errno with nothing
 * changed, or, when the plan cannot be made, with the commit failed.
 */
int dmr_commit_start(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	int r;

	lockdep_assert_held(&core->state_lock);
	r = dmr_persist_active(core);				/* 1 */
	if (r)
		return r;
	dmr_freeze(core);					/* 2 */
	r = dmr_persist_active(core);
	if (!r)							/* 3 */
		r = dmr_core_new_generation(core, DMR_STATE_FAILOVER,
					    core->epoch, core->cursor,
					    DMR_GEN_ACTIVE_LATER);
	if (!r)
		dmr_core_set_state(core, DMR_STATE_FAILOVER);
	dmr_thaw(core);						/* 4 */
	if (r)
		return r;
	dmr_raise_event(core);

	m->start = jiffies;					/* 5 */
	m->since = jiffies;
	r = dmr_commit_plan(core);
	if (r) {
		dmr_commit_fail(core, r);
		return r;
	}
	DMINFO("%s: failover: committing %u chunks from chunk %llu",
	       dmr_core_name(core), m->nr_plan,
	       (unsigned long long)m->durable);
	queue_work(core->wq, &m->work);
	queue_work(core->wq, &m->cursor_work);
	return 0;
}

/* No copy is in flight, and none of their callbacks is still running. */
static bool dmr_commit_idle(struct dmr_commit *m)
{
	bool idle;

	spin_lock_irq(&m->lock);
	idle = !m->copying;
	spin_unlock_irq(&m->lock);
	return idle;
}

/**
 * dmr_commit_pause() - stop starting copies, for a suspend
 * @core: the session's loaded state
 *
 * Waits for the copies in flight and makes their progress durable.
 */
void dmr_commit_pause(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;

	spin_lock_irq(&m->lock);
	m->paused = true;
	spin_unlock_irq(&m->lock);
	/* The merge work gives back an extent that waits for writers. */
	queue_work(core->wq, &m->work);
	flush_work(&m->work);
	wait_event(m->idle, dmr_commit_idle(m));
	queue_work(core->wq, &m->cursor_work);
	flush_work(&m->cursor_work);
}

/**
 * dmr_commit_resume() - let the merge run, for a resume
 * @core: the session's loaded state
 */
void dmr_commit_resume(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;

	spin_lock_irq(&m->lock);
	m->paused = false;
	spin_unlock_irq(&m->lock);
	queue_work(core->wq, &m->work);
	queue_work(core->wq, &m->cursor_work);
}

/**
 * dmr_commit_set_depth() - set how many extents the merge copies at once
 * @core: the session's loaded state
 * @depth: 1 to %DMR_COMMIT_DEPTH_MAX
 *
 * Return: 0, or -EINVAL for a depth out of range.
 */
int dmr_commit_set_depth(struct dmr_core *core, unsigned int depth)
{
	struct dmr_commit *m = core->commit;

	if (!depth || depth > DMR_COMMIT_DEPTH_MAX)
		return -EINVAL;
	spin_lock_irq(&m->lock);
	m->depth = depth;
	spin_unlock_irq(&m->lock);
	queue_work(core->wq, &m->work);
	return 0;
}

/**
 * dmr_commit_remaining() - the chunks the merge has still to copy
 * @core: the session's loaded state, failing over or failed to
 *
 * Return: the plan's chunks not copied yet (not durably, once failed).
 */
u32 dmr_commit_remaining(struct dmr_core *core)
{
	struct dmr_commit *m = core->commit;
	unsigned long flags;
	u32 n;

	spin_lock_irqsave(&m->lock, flags);
	n = m->nr_plan - m->nr_copied;
	spin_unlock_irqrestore(&m->lock, flags);
	return n;
}

/**
 * dmr_commit_durable() - the durable cursor
 * @core: the session's loaded state
 *
 * Return: chunks below it are merged into the secondary device durably.
 */
u64 dmr_commit_durable(struct dmr_core *core)
{
	return READ_ONCE(core->commit->durable);
}

/**
 * dmr_commit_route_write() - route a top write while failing over
 * @core: the session's loaded state
 * @bio: the write, counted in flight
 * @chunk: its chunk
 * @in_active: active held the chunk when looked up
 * @in_hidden: hidden held the chunk when looked up
 *
 * Decides under the chunk's bucket lock and the merge's lock, so that the
 * merge either sees the write counted in the bucket before it copies the
 * chunk, or the write sees the chunk claimed.  %DMR_ROUTE_ACTIVE and
 * %DMR_ROUTE_HIDDEN count the write in its bucket: the caller marks the bio
 * so that its end calls dmr_commit_writer_done().  %DMR_ROUTE_WAIT queues the
 * bio until the cursor moves.
 *
 * Return: the route.
 */
enum dmr_route dmr_commit_route_write(struct dmr_core *core, struct bio *bio,
				      u32 chunk, bool in_active,
				      bool in_hidden)
{
	struct dmr_bucket *b = dmr_bucket(core, chunk);
	struct dmr_commit *m = core->commit;
	enum dmr_route route;

	spin_lock_irq(&b->lock);
	spin_lock(&m->lock);
	route = dmr_route_write(READ_ONCE(core->state), chunk, m->durable,
				m->started, in_active, in_hidden);
	/* dmr_fail() then releases the waiters: they are routed again. */
	if (route == DMR_ROUTE_WAIT && dmr_failed(core))
		route = DMR_ROUTE_FAIL;
	if (route == DMR_ROUTE_WAIT)
		bio_list_add(&m->waiters, bio);
	else if (route == DMR_ROUTE_ACTIVE || route == DMR_ROUTE_HIDDEN)
		b->pins++;
	spin_unlock(&m->lock);
	spin_unlock_irq(&b->lock);

	if (route == DMR_ROUTE_WAIT)
		queue_work(core->wq, &m->cursor_work);
	return route;
}

/**
 * dmr_commit_writer_done() - a write in place has ended
 * @core: the session's loaded state
 *
 * Called after the bucket's writer count dropped to zero: an extent waiting
 * for it may copy now.
 */
void dmr_commit_writer_done(struct dmr_core *core)
{
	if (READ_ONCE(core->commit->wait_writers))
		queue_work(core->wq, &core->commit->work);
}
