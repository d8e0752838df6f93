// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: the COW stores (active and hidden).
 *
 * This file owns what a store is: its device's I/O (two header copies and an
 * array of epoch-stamped records, dm-replication-format.h, encoded by
 * dm-replication-format.c), its in-core mapping (a dense table swapped for
 * an empty one at checkpoint), its bump allocator and its record commit.
 *
 * Crash consistency rests on three rules:
 *  - a record is written only by a commit, and a commit flushes the store
 *    device before it writes records, so no record reaches the disk before
 *    the data of its chunk;
 *  - within an epoch a slot is given out once and its record never changes,
 *    so a torn metadata write leaves each record old or new, never wrong;
 *  - a checkpoint writes the new epoch into the headers with FUA; records of
 *    other epochs are dead, whatever the disk still holds.
 */
#include <linux/dm-bufio.h>
#include <linux/dm-io.h>
#include <linux/hash.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/math.h>
#include <linux/rcupdate.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "dm-replication.h"
#include "dm-replication-cow.h"
#include "dm-replication-format.h"
#include "dm-replication-test.h"

struct dmr_map;

/* The top bit of an index bucket: the mapping's record is durable. */
#define DMR_SLOT_DURABLE	BIT(31)

#define DMR_STORE_ASYNC		0	/* bit of @flags: a started commit runs */

/*
 * The one commit of a store that dmr_store_commit_start() may have in
 * flight: its write, of a copy of one metadata block, and whom to tell.
 */
struct dmr_async {
	struct bio bio;
	struct bio_vec bvec;
	struct llist_node *records;
	int err;
	dmr_commit_done_fn done;
	void *context;
	void *arg;
	struct workqueue_struct *wq;
	struct work_struct work;	/* the end, when the write ends in an irq */
};

struct dmr_store {
	const char *name;		/* "hidden" or "active" */
	enum dmr_role role;
	struct block_device *bdev;
	struct dm_bufio_client *bufio;
	const struct dmr_store_io *io;	/* the commit's steps */
	struct dmr_layout layout;
	unsigned int chunk_shift;

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
	bool failed;			/* a commit failed: never clean again */

	/* A commit in one write writes a copy of its record block from here. */
	struct page *block_copy;
	/* A commit that ends in its write's end: DMR_STORE_ASYNC in @flags. */
	unsigned long flags;
	struct dmr_async async;
};

/* ---------------------------------------------------------------------------
 * The in-core mapping of one epoch: chunk -> slot.
 *
 * The bump allocator hands slots out in order from 0: a run (the chunks of
 * one write, dmr_store_alloc_run()) takes consecutive slots for consecutive
 * chunks, a single chunk takes the next slot.  So the map has two parts:
 *  - @groups, an open-addressing table (linear probing) of entries, each for
 *    an aligned group of %DMR_GROUP_CHUNKS chunks and one delta (slot minus
 *    chunk): a bitmap of the group's chunks mapped at chunk + delta, and one
 *    of those whose records are durable.  A run of %DMR_RUN_MIN chunks or
 *    more makes its entries when it takes its slots (or finds them: runs
 *    placed one after another share a delta), and its chunks set their bits
 *    when they are mapped.  A sequential fill costs under a byte a chunk.
 *  - for the other chunks, @rev, by slot: the chunk the slot holds
 *    (%DMR_NO_CHUNK while it holds none), in pages of %DMR_REV_PER_PAGE
 *    entries, made only where single slots are given out; and @index, an
 *    open-addressing table (linear probing) of u32 buckets, found by a hash
 *    of the chunk: 0 when empty, else the slot + 1 in the low @slot_bits, a
 *    tag (other bits of the hash) above it, so that a probe rarely reads
 *    @rev in vain, and %DMR_SLOT_DURABLE on top.  4 bytes a slot given out
 *    and 4 a bucket at most 3/4 full: about 9 to 12 bytes a chunk.
 * An insert whose chunk and slot an entry of @groups describes sets the
 * entry's bit, however the slot was given out: the entry gives exactly it.
 *
 * Nothing is removed within an epoch, so lookups take no lock: they run
 * under RCU against an insert (which publishes its bucket or bit with
 * release semantics after what a reader needs) and against a growth (which
 * publishes a new table and frees the old one after a grace period).
 * Inserts, durable bits, new entries and the switch to a grown table are
 * serialised by @lock, a spinlock: a write's end maps its chunk without
 * sleeping.  Growths are serialised by @grow_lock; a growth allocates
 * outside @lock and rehashes under it.
 *
 * Room is made ahead (dmr_map_reserve(), which sleeps), so that neither
 * giving slots out nor inserting allocates: a single slot is given out only
 * when its @rev page is there and @index has a bucket for it at most 3/4
 * full (@single_room); a run only when @groups has room for its new entries
 * at most 3/4 full (@group_room).
 */
#define DMR_REV_SHIFT		10
#define DMR_REV_PER_PAGE	BIT(DMR_REV_SHIFT)
#define DMR_NO_CHUNK		U32_MAX		/* chunks are below U32_MAX */
#define DMR_INDEX_MIN		64		/* buckets */
#define DMR_GROUP_CHUNKS	BITS_PER_LONG
#define DMR_GROUP_SHIFT		ilog2(DMR_GROUP_CHUNKS)
#define DMR_GROUPS_MIN		64		/* entries */
#define DMR_RUN_MIN		8	/* shorter runs are mapped as singles */

/* The chunks of one aligned group that sit at chunk + @delta. */
struct dmr_group {
	u32 key;			/* the group + 1; 0: the entry is free */
	u32 delta;			/* slot - chunk, modulo 2^32 */
	unsigned long mapped;		/* bit i: the group's chunk i */
	unsigned long durable;		/* mapped, and its record durable */
};

/*
 * A table of @index or of @groups: an allocation of its own (with a header
 * in front, 2^16 buckets took a 512 KiB block) of as many entries as fill
 * it, sized for what it must hold and not to a power of two: a power of two
 * bytes up to a page (kmalloc's sizes), whole pages above, from vmalloc
 * unless a power of two (kmalloc would round 24 KiB of entries up to 32).
 * A probe starts at the hash scaled to @nr.
 */
struct dmr_table {
	struct rcu_head rcu;
	u32 nr;				/* entries */
	union {
		u32 *buckets;
		struct dmr_group *entries;
		void *mem;
	};
};

struct dmr_map {
	struct dmr_table __rcu *index;
	struct dmr_table __rcu *groups;
	u32 **rev;
	u32 nr_slots;			/* the store's */
	u32 slot_bits;
	u32 tag_mask;			/* the tag's bits in a bucket */
	u32 singles;			/* single slots given out: alloc_lock */
	u32 single_room;		/* singles @index has room for */
	u32 nr_indexed;			/* buckets in use: @lock */
	u32 nr_groups;			/* entries in use: @lock */
	u32 group_room;			/* entries @groups has room for */
	u32 want_groups;		/* entries a run found no room for */
	spinlock_t lock;		/* inserts, durable bits, table switch */
	struct mutex grow_lock;		/* dmr_map_reserve(), @grow_work */
	struct work_struct grow_work;	/* grows @groups ahead of the runs */
	struct work_struct free_work;
};

static struct workqueue_struct *dmr_map_wq;	/* grows and frees maps */

static u32 dmr_map_slot_mask(const struct dmr_map *m)
{
	return (u32)(BIT_ULL(m->slot_bits) - 1);
}

static u32 dmr_map_rev(const struct dmr_map *m, u32 slot)
{
	const u32 *page = READ_ONCE(m->rev[slot >> DMR_REV_SHIFT]);

	return READ_ONCE(page[slot & (DMR_REV_PER_PAGE - 1)]);
}

/* The first place to probe for @hash in @t. */
static u32 dmr_table_start(const struct dmr_table *t, u32 hash)
{
	return reciprocal_scale(hash, t->nr);
}

/* The place to probe after @i in @t (linear probing). */
static u32 dmr_table_next(const struct dmr_table *t, u32 i)
{
	return i + 1 < t->nr ? i + 1 : 0;
}

/*
 * The bucket of @chunk in @ix, or the empty bucket where it would go; @val
 * is set to what the bucket held when it was read (0: empty).  The caller
 * holds the RCU read lock or @m->lock.
 */
static u32 *dmr_index_find(const struct dmr_map *m, struct dmr_table *ix,
			   u32 chunk, u32 *val)
{
	u32 h = __hash_32(chunk), tag = (h << m->slot_bits) & m->tag_mask;
	u32 i, b;

	for (i = dmr_table_start(ix, h);; i = dmr_table_next(ix, i)) {
		/* Pairs with the release in dmr_map_insert(): @rev is set. */
		b = smp_load_acquire(&ix->buckets[i]);
		if (!b ||
		    ((b & m->tag_mask) == tag &&
		     dmr_map_rev(m, (b & dmr_map_slot_mask(m)) - 1) == chunk)) {
			*val = b;
			return &ix->buckets[i];
		}
	}
}

/*
 * The entry of @group with @delta in @gs, or the free entry where it would
 * go.  The caller holds the RCU read lock or @m->lock.
 */
static struct dmr_group *dmr_group_find(struct dmr_table *gs, u32 group,
					u32 delta)
{
	struct dmr_group *e;
	u32 i, key;

	for (i = dmr_table_start(gs, __hash_32(group));; i = dmr_table_next(gs, i)) {
		e = &gs->entries[i];
		/* Pairs with the release in dmr_map_add_run(): @delta is set. */
		key = smp_load_acquire(&e->key);
		if (!key || (key == group + 1 && e->delta == delta))
			return e;
	}
}

/* The bit of @chunk in its group's bitmaps. */
static unsigned long dmr_group_bit(u32 chunk)
{
	return BIT(chunk & (DMR_GROUP_CHUNKS - 1));
}

/*
 * The entry of @gs that maps @chunk, or NULL.  The caller holds the RCU
 * read lock or @m->lock.
 */
static struct dmr_group *dmr_group_of(struct dmr_table *gs, u32 chunk)
{
	u32 group = chunk >> DMR_GROUP_SHIFT, i, key;
	unsigned long bit = dmr_group_bit(chunk);
	struct dmr_group *e;

	for (i = dmr_table_start(gs, __hash_32(group));; i = dmr_table_next(gs, i)) {
		e = &gs->entries[i];
		/* Pairs with the release in dmr_map_add_run(): @delta. */
		key = smp_load_acquire(&e->key);
		if (!key)
			return NULL;
		/* Pairs with the release in dmr_map_insert(): @durable. */
		if (key == group + 1 && (smp_load_acquire(&e->mapped) & bit))
			return e;
	}
}

/*
 * Is @chunk mapped (at @slot, with its record @durable)?  Any context.  (An
 * insert that runs meanwhile may still be a miss.)
 */
static bool dmr_map_get(const struct dmr_map *m, u32 chunk, u32 *slot,
			bool *durable)
{
	struct dmr_group *e;
	u32 b;

	rcu_read_lock();
	e = dmr_group_of(rcu_dereference(m->groups), chunk);
	if (e) {
		*slot = chunk + e->delta;
		*durable = READ_ONCE(e->durable) & dmr_group_bit(chunk);
		b = 1;
	} else {
		dmr_index_find(m, rcu_dereference(m->index), chunk, &b);
		*slot = (b & dmr_map_slot_mask(m)) - 1;
		*durable = b & DMR_SLOT_DURABLE;
	}
	rcu_read_unlock();
	return b;
}

static void dmr_table_free(struct dmr_table *t)
{
	if (t)
		kvfree(t->mem);
	kfree(t);
}

static void dmr_table_free_rcu(struct rcu_head *rcu)
{
	dmr_table_free(container_of(rcu, struct dmr_table, rcu));
}

/* A table of @nr zeroed entries of @size bytes.  Sleeps. */
static struct dmr_table *dmr_table_alloc(u32 nr, size_t size)
{
	unsigned int noio = memalloc_noio_save();
	struct dmr_table *t = kzalloc(sizeof(*t), GFP_KERNEL);

	size *= nr;
	if (t) {
		t->nr = nr;
		if (size > PAGE_SIZE && !is_power_of_2(size))
			t->mem = vzalloc(size);
		else
			t->mem = kvzalloc(size, GFP_KERNEL);
		if (!t->mem) {
			kfree(t);
			t = NULL;
		}
	}
	memalloc_noio_restore(noio);
	return t;
}

/* Fills the empty @to with the buckets of @from (tags and bits kept). */
static void dmr_index_rehash(const struct dmr_map *m, struct dmr_table *to,
			     const struct dmr_table *from)
{
	u32 i, b, chunk, empty;

	for (i = 0; i < from->nr; i++) {
		b = from->buckets[i];
		if (!b)
			continue;
		chunk = dmr_map_rev(m, (b & dmr_map_slot_mask(m)) - 1);
		*dmr_index_find(m, to, chunk, &empty) = b;
	}
}

/* Fills the empty @to with the entries of @from. */
static void dmr_groups_rehash(const struct dmr_map *m, struct dmr_table *to,
			      const struct dmr_table *from)
{
	const struct dmr_group *e;
	u32 i;

	for (i = 0; i < from->nr; i++) {
		e = &from->entries[i];
		if (e->key)
			*dmr_group_find(to, e->key - 1, e->delta) = *e;
	}
}

/* What an allocation of @bytes for a table takes (see dmr_table). */
static u64 dmr_table_alloc_bytes(u64 bytes)
{
	return bytes <= PAGE_SIZE ? roundup_pow_of_two(bytes) :
		round_up(bytes, PAGE_SIZE);
}

/*
 * How many entries of @size bytes a table needs to hold @n at most 3/4
 * full, at least @min: as many as fill its allocation.
 */
static u32 dmr_table_nr_for(u32 n, u32 min, size_t size)
{
	u64 bytes = max_t(u64, min, DIV_ROUND_UP_ULL((u64)n * 4, 3)) * size;

	return min_t(u64, dmr_table_alloc_bytes(bytes) / size, U32_MAX);
}

/* How many entries @t holds at most 3/4 full. */
static u32 dmr_table_room(const struct dmr_table *t)
{
	return (u64)t->nr * 3 / 4;
}

/*
 * What to grow a count of @n in use to: a margin of a half, at least @min.
 * A table sized to it is half full after the growth, so growths rehash at most
 * three times the entries a table ends with.
 */
static u32 dmr_with_margin(u32 n, u32 min)
{
	return min_t(u64, U32_MAX, (u64)n + max(n / 2, min));
}

/*
 * Grows the table @slot of @m, of entries of @size bytes (at least @min),
 * to hold @want when it has less room, rehashing it with @rehash under
 * @m->lock; sets @room to the table's room.  The caller holds
 * @m->grow_lock.  Return: 0 or -ENOMEM.
 */
static int dmr_map_grow(struct dmr_map *m, struct dmr_table __rcu **slot,
			u32 want, u32 min, size_t size,
			void (*rehash)(const struct dmr_map *m,
				       struct dmr_table *to,
				       const struct dmr_table *from),
			u32 *room)
{
	struct dmr_table *t, *old;

	/* Only a growth switches a table: @grow_lock keeps it. */
	old = rcu_dereference_protected(*slot, lockdep_is_held(&m->grow_lock));
	*room = dmr_table_room(old);
	if (want <= *room)
		return 0;
	t = dmr_table_alloc(dmr_table_nr_for(want, min, size), size);
	if (!t)
		return -ENOMEM;
	spin_lock(&m->lock);
	rehash(m, t, old);
	rcu_assign_pointer(*slot, t);
	spin_unlock(&m->lock);
	call_rcu(&old->rcu, dmr_table_free_rcu);
	*room = dmr_table_room(t);
	return 0;
}

/* Makes the @rev pages of slots [@from, @to).  Return: 0 or -ENOMEM. */
static int dmr_map_rev_pages(struct dmr_map *m, u32 from, u32 to)
{
	unsigned int noio = memalloc_noio_save();
	u32 p, *page;
	int r = 0;

	for (p = from >> DMR_REV_SHIFT; p < DIV_ROUND_UP(to, DMR_REV_PER_PAGE);
	     p++) {
		if (m->rev[p])
			continue;
		page = kmalloc_array(DMR_REV_PER_PAGE, sizeof(*page),
				     GFP_KERNEL);
		if (!page) {
			r = -ENOMEM;
			break;
		}
		memset(page, 0xff, DMR_REV_PER_PAGE * sizeof(*page));
		/* The page is filled before a reader can find it. */
		smp_store_release(&m->rev[p], page);
	}
	memalloc_noio_restore(noio);
	return r;
}

/*
 * Gives @groups room for @want entries.  The caller holds @m->grow_lock.
 * Return: 0 or -ENOMEM.
 */
static int dmr_map_group_room(struct dmr_map *m, u32 want)
{
	u32 room;
	int r;

	if (want <= m->group_room)
		return 0;
	r = dmr_map_grow(m, &m->groups, want, DMR_GROUPS_MIN,
			 sizeof(struct dmr_group), dmr_groups_rehash, &room);
	if (r)
		return r;
	/* Pairs with dmr_map_add_run(): the room is made first. */
	smp_store_release(&m->group_room, room);
	return 0;
}

/*
 * Runs used 7/8 of @groups' room (the table is 66 % full): room for 5/3 of
 * the entries in use (45 % full), before a run finds none (and its bio takes
 * the chunk by chunk way, its reserve).  So while the worker keeps up, a
 * table of runs stays 45 to 66 % full: 0.57 to 0.83 bytes a chunk of full
 * groups.
 */
static void dmr_map_grow_work(struct work_struct *w)
{
	struct dmr_map *m = container_of(w, struct dmr_map, grow_work);

	mutex_lock(&m->grow_lock);
	/* On failure a run finds no room and its reserve tries again. */
	dmr_map_group_room(m, min_t(u64, U32_MAX,
				    5ULL * READ_ONCE(m->nr_groups) / 3));
	mutex_unlock(&m->grow_lock);
}

/*
 * Makes room for singles in slots [@from, @to), for @singles singles in
 * all, and for the entries that a run found no room for, with a margin.
 * Sleeps; allocates as GFP_NOIO.  Return: 0, or -ENOMEM with less room.
 */
static int dmr_map_reserve(struct dmr_map *m, u32 from, u32 to, u32 singles)
{
	u32 room;
	int r;

	mutex_lock(&m->grow_lock);
	r = dmr_map_rev_pages(m, from, to);
	if (r)
		goto out;

	if (singles > m->single_room) {
		r = dmr_map_grow(m, &m->index,
				 dmr_with_margin(singles, DMR_REV_PER_PAGE),
				 DMR_INDEX_MIN, sizeof(u32), dmr_index_rehash,
				 &room);
		if (r)
			goto out;
		/* Pairs with dmr_map_take_singles(): the room is made first. */
		smp_store_release(&m->single_room, room);
	}

	if (READ_ONCE(m->want_groups)) {
		r = dmr_map_group_room(m,
				       dmr_with_margin(READ_ONCE(m->want_groups),
						       DMR_GROUPS_MIN));
		if (!r)
			WRITE_ONCE(m->want_groups, 0);
	}
out:
	mutex_unlock(&m->grow_lock);
	return r;
}

/*
 * Gives the single slots [@slot, @slot + @n) room, when the map has made it:
 * their @rev pages and buckets.  Under the store's alloc_lock.  Return: true
 * when it did.
 */
static bool dmr_map_take_singles(struct dmr_map *m, u32 slot, u32 n)
{
	u32 room;

	if (READ_ONCE(m->want_groups))
		return false;
	/* Pairs with dmr_map_reserve(): the room is made first. */
	room = smp_load_acquire(&m->single_room);
	if (m->singles + n > room)
		return false;
	/* Pairs with dmr_map_rev_pages(): a page is filled first. */
	if (!smp_load_acquire(&m->rev[slot >> DMR_REV_SHIFT]))
		return false;
	/* The same, for the last slot's page. */
	if (!smp_load_acquire(&m->rev[(slot + n - 1) >> DMR_REV_SHIFT]))
		return false;
	m->singles += n;
	return true;
}

/* How many group entries chunks [@chunk, @chunk + @n) span. */
static u32 dmr_groups_spanned(u32 chunk, u32 n)
{
	return ((chunk + n - 1) >> DMR_GROUP_SHIFT) - (chunk >> DMR_GROUP_SHIFT) + 1;
}

/*
 * Makes the entries of a run, chunks [@chunk, @chunk + @n) at slots from
 * @slot, their bits clear, when the map has room for them.  Under the
 * store's alloc_lock.  Return: true when it did.
 */
static bool dmr_map_add_run(struct dmr_map *m, u32 chunk, u32 slot, u32 n)
{
	u32 delta = slot - chunk, g, last = (chunk + n - 1) >> DMR_GROUP_SHIFT;
	struct dmr_table *gs;
	struct dmr_group *e;
	bool ok = false;
	u32 want;

	spin_lock(&m->lock);
	want = m->nr_groups + dmr_groups_spanned(chunk, n);
	/* Pairs with dmr_map_reserve(): the room is made first. */
	if (want > smp_load_acquire(&m->group_room)) {
		WRITE_ONCE(m->want_groups, want);
		goto out;
	}
	gs = rcu_dereference_protected(m->groups, lockdep_is_held(&m->lock));
	for (g = chunk >> DMR_GROUP_SHIFT; g <= last; g++) {
		e = dmr_group_find(gs, g, delta);
		if (e->key)
			continue;
		e->delta = delta;
		/* @delta before the key: see dmr_group_find(). */
		smp_store_release(&e->key, g + 1);
		WRITE_ONCE(m->nr_groups, m->nr_groups + 1);
	}
	/* Past 7/8 of the room: a worker grows the table. */
	if (m->nr_groups > m->group_room / 8 * 7)
		queue_work(dmr_map_wq, &m->grow_work);
	ok = true;
out:
	spin_unlock(&m->lock);
	return ok;
}

/*
 * Maps @chunk to @slot, a slot with room.  Return: 0, -EEXIST when the
 * chunk is mapped already, or -ENOMEM when the slot has no room.
 */
static int dmr_map_insert(struct dmr_map *m, u32 chunk, u32 slot, bool durable)
{
	unsigned long bit = dmr_group_bit(chunk);
	struct dmr_table *ix, *gs;
	struct dmr_group *e;
	u32 *b, val;
	int r = 0;

	spin_lock(&m->lock);
	ix = rcu_dereference_protected(m->index, lockdep_is_held(&m->lock));
	gs = rcu_dereference_protected(m->groups, lockdep_is_held(&m->lock));
	b = dmr_index_find(m, ix, chunk, &val);
	if (val || dmr_group_of(gs, chunk)) {
		r = -EEXIST;
		goto out;
	}

	e = dmr_group_find(gs, chunk >> DMR_GROUP_SHIFT, slot - chunk);
	if (e->key) {
		if (durable)
			WRITE_ONCE(e->durable, e->durable | bit);
		/* The durable bit before the mapped one: see dmr_map_get(). */
		smp_store_release(&e->mapped, e->mapped | bit);
		goto out;
	}

	if (slot >= m->nr_slots || !m->rev[slot >> DMR_REV_SHIFT] ||
	    m->nr_indexed >= m->single_room) {
		r = -ENOMEM;
		goto out;
	}
	val = (slot + 1) | ((__hash_32(chunk) << m->slot_bits) & m->tag_mask) |
	      (durable ? DMR_SLOT_DURABLE : 0);
	WRITE_ONCE(m->rev[slot >> DMR_REV_SHIFT][slot & (DMR_REV_PER_PAGE - 1)],
		   chunk);
	/* The slot's @rev entry before its bucket: see dmr_index_find(). */
	smp_store_release(b, val);
	m->nr_indexed++;
out:
	spin_unlock(&m->lock);
	return r;
}

/* Marks the mapping of @chunk durable; the caller holds @m->lock. */
static void dmr_map_set_durable(struct dmr_map *m, u32 chunk)
{
	struct dmr_table *gs = rcu_dereference_protected(m->groups,
						lockdep_is_held(&m->lock));
	struct dmr_group *e = dmr_group_of(gs, chunk);
	struct dmr_table *ix;
	u32 val, *b;

	if (e) {
		WRITE_ONCE(e->durable, e->durable | dmr_group_bit(chunk));
		return;
	}
	ix = rcu_dereference_protected(m->index, lockdep_is_held(&m->lock));
	b = dmr_index_find(m, ix, chunk, &val);
	if (val)
		WRITE_ONCE(*b, val | DMR_SLOT_DURABLE);
}

static void dmr_map_destroy(struct dmr_map *m)
{
	u32 p;

	/* Also for a map whose creation failed halfway. */
	cancel_work_sync(&m->grow_work);
	for (p = 0; m->rev && p < DIV_ROUND_UP(m->nr_slots, DMR_REV_PER_PAGE); p++)
		kfree(m->rev[p]);
	kvfree(m->rev);
	dmr_table_free(rcu_dereference_protected(m->index, true));
	dmr_table_free(rcu_dereference_protected(m->groups, true));
	kfree(m);
}

static void dmr_map_free_work(struct work_struct *w)
{
	dmr_map_destroy(container_of(w, struct dmr_map, free_work));
}

static struct dmr_map *dmr_map_create(u32 nr_slots)
{
	struct dmr_map *m = kzalloc(sizeof(*m), GFP_KERNEL);
	struct dmr_table *ix, *gs;

	if (!m)
		return NULL;
	m->nr_slots = nr_slots;
	/* slot + 1 <= nr_slots fits; what is left below the top bit: tag. */
	m->slot_bits = fls(nr_slots);
	m->tag_mask = m->slot_bits < 31 ? GENMASK(30, m->slot_bits) : 0;
	spin_lock_init(&m->lock);
	mutex_init(&m->grow_lock);
	INIT_WORK(&m->grow_work, dmr_map_grow_work);
	INIT_WORK(&m->free_work, dmr_map_free_work);
	m->rev = kvcalloc(max_t(u32, DIV_ROUND_UP(nr_slots, DMR_REV_PER_PAGE), 1),
			  sizeof(*m->rev), GFP_KERNEL);
	ix = dmr_table_alloc(dmr_table_nr_for(0, DMR_INDEX_MIN, sizeof(u32)),
			     sizeof(u32));
	gs = dmr_table_alloc(dmr_table_nr_for(0, DMR_GROUPS_MIN,
					      sizeof(struct dmr_group)),
			     sizeof(struct dmr_group));
	RCU_INIT_POINTER(m->index, ix);
	RCU_INIT_POINTER(m->groups, gs);
	if (ix)
		m->single_room = dmr_table_room(ix);
	if (gs)
		m->group_room = dmr_table_room(gs);
	/* No @rev page yet: the first single slot waits for a reserve. */
	if (!m->rev || !ix || !gs) {
		dmr_map_destroy(m);
		return NULL;
	}
	return m;
}

static void dmr_async_work(struct work_struct *w);

/**
 * dmr_store_create() - make a store's in-core state, empty
 * @name: "hidden" or "active", for messages
 * @role: which store it is
 * @layout: the store's layout
 * @chunk_sectors: the chunk size
 *
 * Return: the store, with no device yet, or NULL.
 */
struct dmr_store *dmr_store_create(const char *name, enum dmr_role role,
				   const struct dmr_layout *layout,
				   u32 chunk_sectors)
{
	struct dmr_store *st = kzalloc(sizeof(*st), GFP_KERNEL);

	if (!st)
		return NULL;
	st->name = name;
	st->role = role;
	st->layout = *layout;
	st->chunk_shift = ilog2(chunk_sectors);
	spin_lock_init(&st->alloc_lock);
	mutex_init(&st->commit_lock);
	init_llist_head(&st->pending);
	INIT_WORK(&st->async.work, dmr_async_work);

	st->block_epoch = kvcalloc(max_t(u64, layout->meta_blocks, 1),
				   sizeof(*st->block_epoch), GFP_KERNEL);
	st->map = dmr_map_create(layout->nr_slots);
	if (!st->block_epoch || !st->map) {
		dmr_store_destroy(st);
		return NULL;
	}
	return st;
}

/**
 * dmr_store_destroy() - free a store
 * @st: the store, or NULL; nothing may be pending or in flight
 */
void dmr_store_destroy(struct dmr_store *st)
{
	if (!st)
		return;
	flush_work(&st->async.work);
	if (st->block_copy)
		__free_page(st->block_copy);
	if (st->bufio)
		dm_bufio_client_destroy(st->bufio);
	if (st->map)
		dmr_map_destroy(st->map);
	if (st->spare)
		dmr_map_destroy(st->spare);
	kvfree(st->block_epoch);
	kfree(st);
}

/**
 * dmr_store_bdev() - the store's device
 * @st: the store
 *
 * Return: the device, NULL before dmr_store_open().
 */
struct block_device *dmr_store_bdev(struct dmr_store *st)
{
	return st->bdev;
}

/**
 * dmr_store_role() - which store it is
 * @st: the store
 *
 * Return: %DMR_ROLE_HIDDEN or %DMR_ROLE_ACTIVE.
 */
enum dmr_role dmr_store_role(struct dmr_store *st)
{
	return st->role;
}

/**
 * dmr_store_layout() - where things are on the store's device
 * @st: the store
 *
 * Return: the layout, which never changes.
 */
const struct dmr_layout *dmr_store_layout(struct dmr_store *st)
{
	return &st->layout;
}

/**
 * dmr_store_slot_sector() - where a slot's data starts on the device
 * @st: the store
 * @slot: the slot
 *
 * Return: the sector.
 */
sector_t dmr_store_slot_sector(struct dmr_store *st, u32 slot)
{
	return st->layout.data_start + ((sector_t)slot << st->chunk_shift);
}

/**
 * dmr_store_nr_mapped() - how many chunks the store maps
 * @st: the store
 *
 * Return: the chunks mapped in this epoch.
 */
u32 dmr_store_nr_mapped(struct dmr_store *st)
{
	return atomic_read(&st->nr_mapped);
}

/**
 * dmr_store_epoch() - the epoch new records are stamped with
 * @st: the store
 *
 * Return: the epoch.
 */
u64 dmr_store_epoch(struct dmr_store *st)
{
	return st->epoch;
}

/*
 * Takes the next @n free slots for @chunk and on (a single slot when @n is
 * 1), when the map has room made for them.  Any context.
 */
static int dmr_store_take(struct dmr_store *st, u32 chunk, u32 n, u32 *first)
{
	struct dmr_map *m = st->map;
	bool room;
	int r = 0;

	spin_lock(&st->alloc_lock);
	if (n > st->layout.nr_slots - st->next_slot) {
		r = -ENOSPC;
		goto out;
	}
	if (n >= DMR_RUN_MIN)
		room = dmr_map_add_run(m, chunk, st->next_slot, n);
	else
		room = dmr_map_take_singles(m, st->next_slot, n);
	if (!room) {
		r = -EAGAIN;
		goto out;
	}
	*first = st->next_slot;
	st->next_slot += n;
out:
	spin_unlock(&st->alloc_lock);
	return r;
}

/**
 * dmr_store_alloc_run() - take the next free data slots for a run of chunks
 * @st: the store
 * @chunk: the run's first chunk
 * @n: how many chunks, from @chunk on
 * @first: set to the first slot: chunk @chunk + i goes to slot *@first + i
 *
 * Any context.  None is taken on failure.
 *
 * Return: 0, -ENOSPC when fewer than @n slots are free, or -EAGAIN when the
 * map has no room made for them yet: dmr_store_reserve(), then again.
 */
int dmr_store_alloc_run(struct dmr_store *st, u32 chunk, u32 n, u32 *first)
{
	return dmr_store_take(st, chunk, n, first);
}

/**
 * dmr_store_reserve() - make room in the map for @n more single slots
 * @st: the store
 * @n: how many slots beyond those given out
 *
 * Also makes room for runs when one found none.  Sleeps (allocates as
 * GFP_NOIO); the caller keeps the epoch from switching.
 *
 * Return: 0 or -ENOMEM.
 */
int dmr_store_reserve(struct dmr_store *st, u32 n)
{
	struct dmr_map *m = st->map;
	u32 from = READ_ONCE(st->next_slot);

	return dmr_map_reserve(m, from,
			       min_t(u64, (u64)from + n, st->layout.nr_slots),
			       min_t(u64, (u64)READ_ONCE(m->singles) + n,
				     st->layout.nr_slots));
}

/**
 * dmr_store_alloc_slot() - take the next free data slot
 * @st: the store
 * @slot: set to the slot
 *
 * Return: 0, -ENOSPC when the store is full, or -EAGAIN when the map has no
 * room made for it yet: dmr_store_reserve(), then again.
 */
int dmr_store_alloc_slot(struct dmr_store *st, u32 *slot)
{
	return dmr_store_take(st, 0, 1, slot);
}

/**
 * dmr_store_used() - how many slots of the store are in use
 * @st: the store
 *
 * Return: the number of slots given out since the checkpoint.
 */
u32 dmr_store_used(struct dmr_store *st)
{
	return READ_ONCE(st->next_slot);
}

/**
 * dmr_store_lookup() - find the slot of a chunk
 * @st: the store
 * @chunk: the chunk
 * @slot: set to its slot when mapped
 *
 * Safe against concurrent inserts; the caller keeps the epoch from
 * switching (its bio is counted in flight).
 *
 * Return: true when the chunk is mapped.
 */
bool dmr_store_lookup(struct dmr_store *st, u32 chunk, u32 *slot)
{
	bool durable;

	return dmr_map_get(READ_ONCE(st->map), chunk, slot, &durable);
}

/**
 * dmr_store_lookup_durable() - is a chunk mapped, with its record committed?
 * @st: the store
 * @chunk: the chunk
 *
 * A mapping whose record is not committed yet is lost in a crash; the port
 * may only rely on mappings that are not.
 *
 * Return: true when the chunk is mapped and its record is durable.
 */
bool dmr_store_lookup_durable(struct dmr_store *st, u32 chunk)
{
	bool durable;
	u32 slot;

	return dmr_map_get(READ_ONCE(st->map), chunk, &slot, &durable) &&
	       durable;
}

/**
 * dmr_store_insert() - map a chunk to a slot
 * @st: the store
 * @chunk: the chunk
 * @slot: its slot, given out by dmr_store_alloc_run() (or, at load, with
 *	  room made for it)
 * @durable: the mapping's record is committed already
 *
 * Process context (a spinlock, not irq-safe); never sleeps or allocates.
 *
 * Return: 0, -EEXIST when the chunk is mapped already, or -ENOMEM when the
 * slot has no room in the map.
 */
int dmr_store_insert(struct dmr_store *st, u32 chunk, u32 slot, bool durable)
{
	int r = dmr_map_insert(st->map, chunk, slot, durable);

	if (!r)
		atomic_inc(&st->nr_mapped);
	return r;
}

static int dmr_cmp_u32(const void *a, const void *b)
{
	u32 x = *(const u32 *)a, y = *(const u32 *)b;

	return x < y ? -1 : x > y;
}

/*
 * Sorts @v (@n values, at least one) through @tmp (room for @n): a radix
 * sort, least significant byte first; a pass is skipped when every value
 * has the same byte there (the high bytes of small chunk numbers).  Linear
 * time: a failover's plan of 2^17 chunks sorted in a few milliseconds where
 * sort() took about 70 under TCG.
 */
static void dmr_radix_sort(u32 *v, u32 *tmp, u32 n)
{
	u32 count[256], *src = v, *dst = tmp, i, sum, c;
	unsigned int shift;

	for (shift = 0; shift < 32; shift += 8) {
		memset(count, 0, sizeof(count));
		for (i = 0; i < n; i++)
			count[(src[i] >> shift) & 0xff]++;
		if (count[(src[0] >> shift) & 0xff] == n)
			continue;
		for (i = 0, sum = 0; i < 256; i++) {
			c = count[i];
			count[i] = sum;
			sum += c;
		}
		for (i = 0; i < n; i++)
			dst[count[(src[i] >> shift) & 0xff]++] = src[i];
		swap(src, dst);
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
}

/**
 * dmr_sort_unique() - sort chunks and drop duplicates
 * @chunks: the chunks, sorted in place
 * @n: how many
 *
 * Sleeps: allocates a second array of @n (GFP_NOIO); without it sorts in
 * place, more slowly.
 *
 * Return: how many are left, each once, ascending, at the start of @chunks.
 */
u32 dmr_sort_unique(u32 *chunks, u32 n)
{
	unsigned int noio;
	u32 i, out = 0, *tmp;

	if (n > 1) {
		noio = memalloc_noio_save();
		tmp = kvmalloc_array(n, sizeof(*tmp), GFP_KERNEL);
		memalloc_noio_restore(noio);
		if (tmp)
			dmr_radix_sort(chunks, tmp, n);
		else
			sort(chunks, n, sizeof(*chunks), dmr_cmp_u32, NULL);
		kvfree(tmp);
	}
	for (i = 0; i < n; i++)
		if (!out || chunks[out - 1] != chunks[i])
			chunks[out++] = chunks[i];
	return out;
}

/* Adds the chunks an entry of @gs maps to @chunks; false when they overflow. */
static bool dmr_groups_collect(struct dmr_table *gs, u32 *chunks, u32 max,
			       u32 *n)
{
	const struct dmr_group *e;
	unsigned long bits;
	u32 i, b;

	for (i = 0; i < gs->nr; i++) {
		e = &gs->entries[i];
		if (!e->key)
			continue;
		bits = e->mapped;
		for_each_set_bit(b, &bits, DMR_GROUP_CHUNKS) {
			if (*n >= max)
				return false;
			chunks[(*n)++] = ((e->key - 1) << DMR_GROUP_SHIFT) + b;
		}
	}
	return true;
}

/**
 * dmr_store_collect() - list the chunks a store maps
 * @st: the store, whose map does not change meanwhile
 * @chunks: filled with the chunks: the singles in the order of their slots,
 *	    then the runs' chunks
 * @max: room in @chunks: the store's count of mapped chunks
 * @n: set to how many were listed
 *
 * Return: 0, or -EIO when the map holds more chunks than @max.
 */
int dmr_store_collect(struct dmr_store *st, u32 *chunks, u32 max, u32 *n)
{
	struct dmr_map *m = st->map;
	u32 slot, c;

	*n = 0;
	for (slot = 0; slot < m->nr_slots; slot++) {
		if (!m->rev[slot >> DMR_REV_SHIFT]) {
			slot |= DMR_REV_PER_PAGE - 1;
			continue;
		}
		c = dmr_map_rev(m, slot);
		if (c == DMR_NO_CHUNK)
			continue;
		if (*n >= max)
			return -EIO;
		chunks[(*n)++] = c;
	}
	return dmr_groups_collect(rcu_dereference_protected(m->groups, true),
				  chunks, max, n) ? 0 : -EIO;
}

/*
 * Takes the commit: its mutex, then the end of a started commit
 * (dmr_store_commit_start()), which holds only DMR_STORE_ASYNC.
 */
static void dmr_commit_lock(struct dmr_store *st)
{
	mutex_lock(&st->commit_lock);
	wait_on_bit(&st->flags, DMR_STORE_ASYNC, TASK_UNINTERRUPTIBLE);
}

/**
 * dmr_store_prepare_reset() - allocate the empty map of the next epoch
 * @st: the store
 *
 * Called before the new epoch is made durable, so that the switch itself
 * cannot fail.
 *
 * Return: 0 or -ENOMEM.
 */
int dmr_store_prepare_reset(struct dmr_store *st)
{
	if (!st->spare)
		st->spare = dmr_map_create(st->layout.nr_slots);
	return st->spare ? 0 : -ENOMEM;
}

/**
 * dmr_store_reset() - empty a store for a new epoch, in constant time
 * @st: the store, prepared; nothing may be in flight on it
 * @epoch: the new epoch
 * @discarded: set to the pending records that will never be committed
 *
 * The old map is freed by a worker.
 */
void dmr_store_reset(struct dmr_store *st, u64 epoch,
		     struct llist_node **discarded)
{
	struct dmr_map *old;

	dmr_commit_lock(st);
	*discarded = llist_del_all(&st->pending);
	old = st->map;
	WRITE_ONCE(st->map, st->spare);
	st->spare = NULL;
	st->epoch = epoch;
	atomic_set(&st->nr_mapped, 0);
	spin_lock(&st->alloc_lock);
	st->next_slot = 0;
	spin_unlock(&st->alloc_lock);
	mutex_unlock(&st->commit_lock);

	queue_work(dmr_map_wq, &old->free_work);
}

/* ---------------------------------------------------------------------------
 * On-disk I/O: headers with dm-io, metadata blocks with dm-bufio.
 */

static int dmr_sync_io(struct dm_io_client *io, struct block_device *bdev,
		       blk_opf_t opf, sector_t sector, sector_t count,
		       void *buf)
{
	struct dm_io_region region = {
		.bdev = bdev,
		.sector = sector,
		.count = count,
	};
	struct dm_io_request req = {
		.bi_opf = opf,
		.mem.type = DM_IO_KMEM,
		.mem.ptr.addr = buf,
		.client = io,
	};

	return dm_io(&req, 1, &region, NULL, IOPRIO_DEFAULT);
}

static int dmr_read_header_area(struct dm_io_client *io,
				struct block_device *bdev, void *area)
{
	return dmr_sync_io(io, bdev, REQ_OP_READ, 0, DMR_HEADER_SECTORS, area);
}

/**
 * dmr_store_read_header() - read a store device's header, and check it
 * @io: a dm-io client
 * @bdev: the store device
 * @role: the store the table says the device is
 * @chunk_sectors: the table's chunk size
 * @secondary_sectors: the table's length
 * @h: filled with the header when valid
 * @error: set to the reason on failure
 *
 * Return: 0 for a valid header that belongs to the table, 1 for a blank
 * store, or a negative errno with @error set.
 */
int dmr_store_read_header(struct dm_io_client *io, struct block_device *bdev,
			  enum dmr_role role, u32 chunk_sectors,
			  u64 secondary_sectors, struct dmr_header *h,
			  char **error)
{
	bool hidden = role == DMR_ROLE_HIDDEN;
	void *area;
	int r;

	area = kmalloc(DMR_HEADER_SECTORS << SECTOR_SHIFT, GFP_KERNEL);
	if (!area) {
		*error = "Cannot allocate header buffer";
		return -ENOMEM;
	}
	r = dmr_read_header_area(io, bdev, area);
	if (r) {
		*error = hidden ? "Cannot read the hidden store's header" :
				  "Cannot read the active store's header";
		goto out;
	}
	r = dmr_header_pick(area, h, error);
	if (!r)
		r = dmr_header_check(h, role, chunk_sectors, secondary_sectors,
				     bdev_nr_sectors(bdev), error);
out:
	kfree(area);
	return r;
}

/**
 * dmr_store_write_header() - write a header durably
 * @st: the store, open
 * @io: a dm-io client
 * @h: the header; copy A or B by its generation's parity
 * @flush_first: make what was written to the store before durable first
 *
 * The write carries FUA, and PREFLUSH with @flush_first: the header is
 * durable when this returns.  A header that empties the store for a new
 * epoch needs no PREFLUSH: nothing written before survives it.
 *
 * Return: 0 or a negative errno.
 */
int dmr_store_write_header(struct dmr_store *st, struct dm_io_client *io,
			   const struct dmr_header *h, bool flush_first)
{
	struct dmr_disk_header *d = kmalloc(sizeof(*d), GFP_NOIO);
	int r;

	if (!d)
		return -ENOMEM;
	dmr_header_encode(h, d);
	r = dmr_sync_io(io, st->bdev, REQ_OP_WRITE | REQ_FUA | REQ_SYNC |
			(flush_first ? REQ_PREFLUSH : 0), h->seq & 1, 1, d);
	kfree(d);
	return r;
}

/* Metadata block b of the area is bufio block 1 + b (block 0 is headers). */
static sector_t dmr_meta_block(u64 b)
{
	return (DMR_HEADER_SECTORS / DMR_META_BLOCK_SECTORS) + b;
}

/* Writes @p's record into its metadata block's content @block. */
static void dmr_fill_record(struct dmr_disk_record *block, u64 epoch,
			    const struct dmr_pending *p)
{
	struct dmr_disk_record *rec = block + p->slot % DMR_RECORDS_PER_BLOCK;

	rec->chunk = cpu_to_le64(p->chunk);
	rec->epoch = cpu_to_le64(epoch);
}

/*
 * Metadata block @b of this store for records of @epoch: read, or, when it
 * holds only dead records, started afresh.  Sleeps.
 */
static struct dmr_disk_record *dmr_bufio_block(struct dmr_store *st, u64 b,
					       u64 epoch,
					       struct dm_buffer **buf)
{
	struct dmr_disk_record *rec;

	if (st->block_epoch[b] == epoch)
		return dm_bufio_read(st->bufio, dmr_meta_block(b), buf);
	rec = dm_bufio_new(st->bufio, dmr_meta_block(b), buf);
	if (!IS_ERR(rec)) {
		memset(rec, 0, DMR_META_BLOCK_SIZE);
		st->block_epoch[b] = epoch;
	}
	return rec;
}

static int dmr_bufio_write_record(struct dmr_store *st, u64 epoch,
				  const struct dmr_pending *p)
{
	struct dmr_disk_record *rec;
	struct dm_buffer *buf;

	rec = dmr_bufio_block(st, p->slot / DMR_RECORDS_PER_BLOCK, epoch, &buf);
	if (IS_ERR(rec))
		return PTR_ERR(rec);

	dmr_fill_record(rec, epoch, p);
	dm_bufio_mark_buffer_dirty(buf);
	dm_bufio_release(buf);
	return 0;
}

/* The metadata block all of @list's records lie in, or -1 if none. */
static s64 dmr_one_block(struct llist_node *list)
{
	struct dmr_pending *p = llist_entry(list, struct dmr_pending, node);
	u64 b = p->slot / DMR_RECORDS_PER_BLOCK;

	llist_for_each_entry(p, list, node)
		if (p->slot / DMR_RECORDS_PER_BLOCK != b)
			return -1;
	return b;
}

/*
 * Writes @list's records into their block's buffer @rec and copies the
 * block into @st->block_copy, then releases the buffer.  The copy is
 * written without dm-bufio, so the buffer stays clean: a later commit that
 * rewrites the block writes these records again.
 */
static void dmr_copy_block(struct dmr_store *st, u64 epoch,
			   struct llist_node *list,
			   struct dmr_disk_record *rec, struct dm_buffer *buf)
{
	struct dmr_pending *p;

	llist_for_each_entry(p, list, node)
		dmr_fill_record(rec, epoch, p);
	memcpy(page_address(st->block_copy), rec, DMR_META_BLOCK_SIZE);
	dm_bufio_release(buf);
}

/*
 * A bio that writes the copy of block @b: REQ_PREFLUSH, so that the
 * chunks' data is durable before the records, and REQ_FUA, so that the
 * records are when it ends.
 */
static void dmr_block_bio_init(struct dmr_store *st, struct bio *bio,
			       struct bio_vec *bvec, u64 b)
{
	bio_init(bio, st->bdev, bvec, 1,
		 REQ_OP_WRITE | REQ_PREFLUSH | REQ_FUA | REQ_SYNC);
	bio->bi_iter.bi_sector = dmr_meta_block(b) * DMR_META_BLOCK_SECTORS;
	__bio_add_page(bio, st->block_copy, DMR_META_BLOCK_SIZE, 0);
}

/*
 * Steps 1 to 4 of a commit in one write, when @list's records lie in one
 * block; -EAGAIN otherwise.  Sleeps.
 */
static int dmr_bufio_write_block(struct dmr_store *st, u64 epoch,
				 struct llist_node *list)
{
	s64 b = dmr_one_block(list);
	struct dmr_disk_record *rec;
	struct dm_buffer *buf;
	struct bio_vec bvec;
	struct bio bio;
	int r;

	if (b < 0)
		return -EAGAIN;
	rec = dmr_bufio_block(st, b, epoch, &buf);
	if (IS_ERR(rec))
		return PTR_ERR(rec);
	dmr_copy_block(st, epoch, list, rec, buf);
	dmr_block_bio_init(st, &bio, &bvec, b);
	r = submit_bio_wait(&bio);
	bio_uninit(&bio);
	return r;
}

static int dmr_bufio_flush(struct dmr_store *st)
{
	return dm_bufio_issue_flush(st->bufio);
}

static int dmr_bufio_write_dirty(struct dmr_store *st)
{
	return dm_bufio_write_dirty_buffers(st->bufio);
}

static const struct dmr_store_io dmr_bufio_io = {
	.flush = dmr_bufio_flush,
	.write_record = dmr_bufio_write_record,
	.write_dirty = dmr_bufio_write_dirty,
	.write_block = dmr_bufio_write_block,
};

/* ---- a commit that ends in its write's end ------------------------------- */

/*
 * The end of a started commit, in task context:
 *  5. mark the records' mappings durable, or fail the store for good;
 *  6. let the next commit in (DMR_STORE_ASYNC);
 *  7. hand the records to the caller's @done.
 */
static void dmr_async_end(struct dmr_async *a)
{
	struct llist_node *records = a->records;
	dmr_commit_done_fn done = a->done;
	void *context = a->context, *arg = a->arg;
	struct dmr_store *st = container_of(a, struct dmr_store, async);
	struct dmr_pending *p;
	int err = a->err;

	if (err) {						/* 5 */
		WRITE_ONCE(st->failed, true);
	} else {
		spin_lock(&st->map->lock);
		llist_for_each_entry(p, records, node)
			if (p->mapped)
				dmr_map_set_durable(st->map, p->chunk);
		spin_unlock(&st->map->lock);
	}
	clear_and_wake_up_bit(DMR_STORE_ASYNC, &st->flags);	/* 6 */
	done(context, arg, records, err);			/* 7 */
}

static void dmr_async_work(struct work_struct *w)
{
	dmr_async_end(container_of(w, struct dmr_async, work));
}

/*
 * The map's lock is never taken in interrupt context: a write that ends in
 * one (virtio's) ends the commit through the caller's workqueue; one that
 * ends in task context (brd's, in its submitter) ends it at once.
 */
static void dmr_async_endio(struct bio *bio)
{
	struct dmr_async *a = bio->bi_private;

	a->err = blk_status_to_errno(bio->bi_status);
	bio_uninit(bio);
	if (in_task())
		dmr_async_end(a);
	else
		queue_work(a->wq, &a->work);
}

/*
 * Copies @list's block for the write when the records all lie in one block
 * of this epoch that dm-bufio holds: dm_bufio_get() never reads, so this is
 * safe in map().
 *
 * Return: the block, or -1 when the records do not qualify.
 */
static s64 dmr_async_fill(struct dmr_store *st, struct llist_node *list)
{
	s64 b = dmr_one_block(list);
	struct dmr_disk_record *rec;
	struct dm_buffer *buf;

	if (b < 0 || st->block_epoch[b] != st->epoch)
		return -1;
	rec = dm_bufio_get(st->bufio, dmr_meta_block(b), &buf);
	if (IS_ERR_OR_NULL(rec))
		return -1;
	dmr_copy_block(st, st->epoch, list, rec, buf);
	return b;
}

/* Gives the records of @list back to the pending list. */
static void dmr_async_unfill(struct dmr_store *st, struct llist_node *list)
{
	struct llist_node *last = list;

	if (!list)
		return;
	while (last->next)
		last = last->next;
	llist_add_batch(list, last, &st->pending);
}

/**
 * dmr_store_commit_start() - start a commit that never waits
 * @st: the store, open
 * @wq: a workqueue for the commit's end, when its write ends in an irq
 * @done: called with @context, @arg, the records taken and 0 or the error,
 *	  in task context, once the records are durable or the store failed
 * @context: for @done
 * @arg: for @done
 *
 * Does what dmr_store_commit() does, in one write, when that needs no wait:
 * no other commit runs, the store has not failed, and the pending records
 * all lie in one metadata block that this epoch wrote and that dm-bufio
 * holds.  Steps 1 to 4 are one write of the block's copy with
 * REQ_PREFLUSH | REQ_FUA: its flush makes the chunks' data durable before
 * the records, its FUA the records.  The end (dmr_async_end()) does the
 * rest.  Nothing here waits for I/O: a target's map() may call it, and the
 * write goes out after map() returns.
 *
 * Return: true when started; false when nothing was done, and the caller
 * commits with dmr_store_commit().
 */
bool dmr_store_commit_start(struct dmr_store *st, struct workqueue_struct *wq,
			    dmr_commit_done_fn done, void *context, void *arg)
{
	struct dmr_async *a = &st->async;
	struct llist_node *list;
	s64 b = -1;

	if (st->io != &dmr_bufio_io || READ_ONCE(st->failed) ||
	    !mutex_trylock(&st->commit_lock))
		return false;
	if (test_and_set_bit_lock(DMR_STORE_ASYNC, &st->flags)) {
		mutex_unlock(&st->commit_lock);
		return false;
	}
	list = llist_del_all(&st->pending);
	if (list && !st->failed)
		b = dmr_async_fill(st, list);
	if (b < 0) {
		dmr_async_unfill(st, list);
		clear_and_wake_up_bit(DMR_STORE_ASYNC, &st->flags);
		mutex_unlock(&st->commit_lock);
		return false;
	}
	mutex_unlock(&st->commit_lock);

	a->records = list;
	a->done = done;
	a->context = context;
	a->arg = arg;
	a->wq = wq;
	dmr_block_bio_init(st, &a->bio, &a->bvec, b);
	a->bio.bi_end_io = dmr_async_endio;
	a->bio.bi_private = a;
	submit_bio(&a->bio);
	return true;
}

/**
 * dmr_store_open() - attach a store to its device
 * @st: the store, made by dmr_store_create()
 * @bdev: the store device
 *
 * Return: 0 or a negative errno.
 */
int dmr_store_open(struct dmr_store *st, struct block_device *bdev)
{
	struct dm_bufio_client *c;

	c = dm_bufio_client_create(bdev, DMR_META_BLOCK_SIZE, 1, 0, NULL, NULL,
				   0);
	if (IS_ERR(c))
		return PTR_ERR(c);
	st->block_copy = alloc_page(GFP_KERNEL);
	if (!st->block_copy) {
		dm_bufio_client_destroy(c);
		return -ENOMEM;
	}
	st->bdev = bdev;
	st->bufio = c;
	st->io = &dmr_bufio_io;
	return 0;
}

static int dmr_store_load_block(struct dmr_store *st, u64 b, u64 epoch,
				u64 nr_chunks, struct dmr_store *other,
				u32 *not_in_other, char **error)
{
	struct dmr_disk_record *rec;
	struct dm_buffer *buf;
	unsigned int i;
	int r = 0;

	rec = dm_bufio_read(st->bufio, dmr_meta_block(b), &buf);
	if (IS_ERR(rec)) {
		*error = "Cannot read store metadata";
		return PTR_ERR(rec);
	}

	for (i = 0; i < DMR_RECORDS_PER_BLOCK; i++) {
		u64 slot = b * DMR_RECORDS_PER_BLOCK + i;
		u32 chunk, other_slot;

		if (slot >= st->layout.nr_slots)
			break;
		if (!dmr_record_live(&rec[i], epoch, nr_chunks, &chunk))
			continue;

		/* A load maps chunk by chunk: singles. */
		r = dmr_map_reserve(st->map, slot, slot + 1,
				    st->map->singles + 1);
		if (!r)
			r = dmr_store_insert(st, chunk, slot, true);
		if (!r)
			st->map->singles++;
		if (r) {
			*error = r == -EEXIST ?
				 "Store metadata maps a chunk twice" :
				 "Cannot allocate store mapping";
			break;
		}
		st->block_epoch[b] = epoch;
		st->next_slot = max_t(u32, st->next_slot, slot + 1);
		if (other && !dmr_store_lookup(other, chunk, &other_slot))
			(*not_in_other)++;
	}

	dm_bufio_release(buf);
	return r;
}

/**
 * dmr_store_load() - rebuild a store's mapping from its metadata
 * @st: the store, open and empty
 * @epoch: the session's epoch: records of it are live, new ones get it
 * @nr_chunks: chunks of the secondary device
 * @other: a store loaded before, or NULL
 * @not_in_other: incremented for each chunk mapped here and not in @other
 * @error: set to the reason on failure
 *
 * Reads the whole metadata area once.  The allocator resumes after the
 * highest live slot; slots below it without a record stay unused until the
 * next checkpoint.
 *
 * Return: 0 or a negative errno with @error set.
 */
int dmr_store_load(struct dmr_store *st, u64 epoch, u64 nr_chunks,
		   struct dmr_store *other, u32 *not_in_other, char **error)
{
	u64 b;
	int r;

	st->epoch = epoch;
	dm_bufio_prefetch(st->bufio, dmr_meta_block(0), st->layout.meta_blocks);
	for (b = 0; b < st->layout.meta_blocks; b++) {
		r = dmr_store_load_block(st, b, epoch, nr_chunks, other,
					 not_in_other, error);
		if (r)
			return r;
		cond_resched();
	}
	return 0;
}

/**
 * dmr_store_queue() - queue a record for the store's next commit
 * @st: the store
 * @p: the record; its chunk's data is in its slot.  A commit (or a reset)
 *     hands it back to its owner.
 */
void dmr_store_queue(struct dmr_store *st, struct dmr_pending *p)
{
	llist_add(&p->node, &st->pending);
}

/**
 * dmr_store_has_pending() - does a record wait for a commit?
 * @st: the store
 *
 * Return: true when one does.
 */
bool dmr_store_has_pending(struct dmr_store *st)
{
	return !llist_empty(&st->pending);
}

/**
 * dmr_store_take_pending() - take the records that wait, uncommitted
 * @st: the store
 *
 * For an owner that will never commit them (its session failed).
 *
 * Return: the records.
 */
struct llist_node *dmr_store_take_pending(struct dmr_store *st)
{
	return llist_del_all(&st->pending);
}

/**
 * dmr_store_set_io() - replace the commit's steps (KUnit)
 * @st: the store
 * @io: the steps
 */
void dmr_store_set_io(struct dmr_store *st, const struct dmr_store_io *io)
{
	st->io = io;
}

/**
 * dmr_store_map_bytes() - the memory a store's map holds (KUnit)
 * @st: the store, whose map nothing but its grow worker changes meanwhile
 *
 * Waits for the grow worker.
 *
 * Return: the bytes of its two tables, of its @rev pages and of their array.
 */
size_t dmr_store_map_bytes(struct dmr_store *st)
{
	struct dmr_map *m = st->map;
	u32 p, pages = DIV_ROUND_UP(m->nr_slots, DMR_REV_PER_PAGE);
	size_t bytes = max_t(u32, pages, 1) * sizeof(*m->rev);
	struct dmr_table *ix, *gs;

	flush_work(&m->grow_work);
	for (p = 0; p < pages; p++)
		bytes += m->rev[p] ? DMR_REV_PER_PAGE * sizeof(u32) : 0;
	ix = rcu_dereference_protected(m->index, true);
	gs = rcu_dereference_protected(m->groups, true);
	bytes += dmr_table_alloc_bytes((u64)ix->nr * sizeof(u32));
	return bytes + dmr_table_alloc_bytes((u64)gs->nr * sizeof(*gs->entries));
}

/**
 * dmr_store_clean() - are all the store's records durable?
 * @st: the store
 *
 * True when no record waits for a commit, no commit is writing one, and no
 * commit ever failed.  A
 * bio that completed before the call had its record queued (or committed)
 * before it completed, so a FLUSH that finds the store clean needs only the
 * store device's own flush.
 *
 * Return: true when clean.
 */
bool dmr_store_clean(struct dmr_store *st)
{
	if (READ_ONCE(st->failed) || !llist_empty(&st->pending))
		return false;
	/*
	 * A commit takes the list under its lock, and llist_del_all() is a
	 * full barrier: seeing the list empty by its hand, we see the lock
	 * taken until the records are durable.  A started commit holds the
	 * lock and has set DMR_STORE_ASYNC when it takes the list, and keeps
	 * the bit until its records are durable.
	 */
	smp_rmb();
	return !mutex_is_locked(&st->commit_lock) &&
	       !test_bit(DMR_STORE_ASYNC, &st->flags);
}

/**
 * dmr_store_failed() - has a commit of the store failed?
 * @st: the store
 *
 * Return: true once a commit failed: its records may or may not be on disk.
 */
bool dmr_store_failed(struct dmr_store *st)
{
	return READ_ONCE(st->failed);
}

/* Steps 1 to 4 of dmr_store_commit(), one by one. */
static int dmr_commit_steps(struct dmr_store *st, struct llist_node *list)
{
	struct dmr_pending *p;
	int r;

	r = st->io->flush(st);				/* 1 */
	if (r || !list)
		return r;
	llist_for_each_entry(p, list, node) {		/* 2 */
		r = st->io->write_record(st, st->epoch, p);
		if (r)
			return r;
	}
	r = st->io->write_dirty(st);			/* 3 */
	if (!r)
		r = st->io->flush(st);			/* 4 */
	return r;
}

/**
 * dmr_store_commit() - make the store's pending records durable
 * @st: the store, open
 * @one_write: steps 1 to 4 may be one write (see below)
 * @err: set to 0 or the first error
 *
 * Steps (each stops the commit when it fails):
 *  1. flush the store device, so that the chunks' data is durable;
 *  2. write the pending records into their metadata blocks;
 *  3. write the dirty metadata blocks;
 *  4. flush again, so that the records are durable;
 *  5. mark the records' mappings durable.
 * With nothing pending it only flushes, which a FLUSH of the top needs too.
 * With @one_write, when the records all lie in one metadata block, steps
 * 1 to 4 are one write of that block with REQ_PREFLUSH | REQ_FUA (the
 * device's flush sequence does them, and the caller waits once, not three
 * times).
 *
 * A failed step leaves the records neither durable nor pending, and the disk
 * in a state nobody knows: the store is failed for good.  It is never clean
 * again and every later commit fails with -EIO at once, writing nothing;
 * only loading the store anew from its device leaves that.
 *
 * Return: the records taken (committed, or not on error), for the caller to
 * free.
 */
struct llist_node *dmr_store_commit(struct dmr_store *st, bool one_write,
				    int *err)
{
	struct llist_node *list;
	struct dmr_pending *p;
	int r = -EIO;

	dmr_commit_lock(st);
	list = llist_del_all(&st->pending);
	if (st->failed)
		goto out;
	r = -EAGAIN;
	if (one_write && list && st->io->write_block)	/* 1-4 at once */
		r = st->io->write_block(st, st->epoch, list);
	if (r == -EAGAIN)
		r = dmr_commit_steps(st, list);
	if (r || !list)
		goto out;
	/* 5, under the lock: a checkpoint may not switch the map first. */
	spin_lock(&st->map->lock);
	llist_for_each_entry(p, list, node)
		if (p->mapped)
			dmr_map_set_durable(st->map, p->chunk);
	spin_unlock(&st->map->lock);
out:
	if (r)
		WRITE_ONCE(st->failed, true);
	mutex_unlock(&st->commit_lock);

	*err = r;
	return list;
}

/**
 * dmr_store_module_init() - module-wide set-up of the stores
 *
 * Return: 0 or -ENOMEM.
 */
int dmr_store_module_init(void)
{
	dmr_map_wq = alloc_workqueue("dmr_map", WQ_UNBOUND, 0);
	return dmr_map_wq ? 0 : -ENOMEM;
}

/**
 * dmr_store_module_exit() - module-wide tear-down of the stores
 */
void dmr_store_module_exit(void)
{
	/* Maps being freed: wait for them; and for indexes freed under RCU. */
	destroy_workqueue(dmr_map_wq);
	rcu_barrier();
}
