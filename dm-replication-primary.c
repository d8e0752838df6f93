// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: primary mode.
 *
 *   replication primary <local dev> <remote dev> [<#feature args> [<feature arg>]*]
 *   features: metadata <dev> | region_size <sectors> | sync_all
 *
 * The primary VM's disk.  Reads come from local.  A write goes to local and
 * remote (the secondary's port, usually over NBD) at once and completes when
 * both have; a local error fails it, a remote error never does: the primary
 * becomes degraded, and from then on writes go to local only and their
 * regions are marked out of sync.  A table reload with a working remote
 * copies the out-of-sync regions local -> remote in the background (syncing).
 *
 * This is dm-raid1's design with one mirror that may never fail the VM: the
 * regions come from dm-region-hash, the out-of-sync log is a dm-dirty-log
 * ("core", or "disk" on the metadata device: write-intent, so a crash resyncs
 * the writes it cut), and the copy is dm-kcopyd's.  One worker issues writes
 * (after their regions are marked in the log), starts copies, and turns the
 * state; writes to a region being copied wait in the region hash until the
 * copy ends, so the remote never ends older than local.
 */
#include <linux/blkdev.h>
#include <linux/dm-dirty-log.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/dm-region-hash.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-replication.h"
#include "dm-replication-primary.h"

/* dm_io region indices, and so bits of its error word. */
#define DMR_LOCAL		0
#define DMR_REMOTE		1

/* dm-log.c's MIRROR_MAGIC: the first word of a disk log. */
#define DMR_LOG_MAGIC		0x4D695272U

/* Regions copied at once by a resync. */
#define DMR_MAX_RECOVERY	4U

/* ---------------------------------------------------------------------------
 * Pure helpers: parsing, region arithmetic, the state table.  KUnit tests
 * them (tests/kunit/dm-replication-test.c).
 */

static int dmr_read_region_size(struct dm_arg_set *as, u32 *region_size,
				char **error)
{
	static const struct dm_arg arg = {
		.min = DMR_REGION_MIN,
		.max = DMR_REGION_MAX,
		.error = "Invalid region_size: expected a power of two from 8 to 2097152 sectors",
	};
	unsigned int v;
	int r;

	r = dm_read_arg(&arg, as, &v, error);
	if (r)
		return r;
	if (!is_power_of_2(v)) {
		*error = arg.error;
		return -EINVAL;
	}
	*region_size = v;
	return 0;
}

/* Parses one feature (its name already shifted) and its argument if any. */
static int dmr_parse_feature(const char *name, struct dm_arg_set *as,
			     unsigned int *argc, struct dmr_primary_features *f,
			     char **error)
{
	if (!strcmp(name, "sync_all")) {
		if (f->sync_all)
			goto duplicate;
		f->sync_all = true;
		return 0;
	}
	if (strcmp(name, "metadata") && strcmp(name, "region_size")) {
		if (!strcmp(name, "low_water_mark"))
			*error = "Feature of secondary mode: low_water_mark";
		else if (!strcmp(name, "port_copy_chunks"))
			*error = "Feature of secondary mode: port_copy_chunks";
		else
			*error = "Unrecognised feature argument";
		return -EINVAL;
	}
	if (!*argc) {
		*error = "Feature needs an argument";
		return -EINVAL;
	}
	(*argc)--;
	if (!strcmp(name, "metadata")) {
		if (f->metadata)
			goto duplicate;
		f->metadata = dm_shift_arg(as);
		return 0;
	}
	if (f->has_region_size)
		goto duplicate;
	f->has_region_size = true;
	return dmr_read_region_size(as, &f->region_size, error);

duplicate:
	*error = "Duplicate feature argument";
	return -EINVAL;
}

int dmr_primary_parse_features(struct dm_arg_set *as,
			       struct dmr_primary_features *f, char **error)
{
	static const struct dm_arg group = {
		.min = 0,
		.max = 5,
		.error = "Invalid number of feature arguments",
	};
	unsigned int argc = 0;
	int r;

	memset(f, 0, sizeof(*f));
	f->region_size = DMR_REGION_DEFAULT;
	if (as->argc) {
		r = dm_read_arg_group(&group, as, &argc, error);
		if (r)
			return r;
	}
	while (argc) {
		argc--;
		r = dmr_parse_feature(dm_shift_arg(as), as, &argc, f, error);
		if (r)
			return r;
	}
	if (as->argc) {
		*error = "Too many arguments";
		return -EINVAL;
	}
	return 0;
}

int dmr_primary_region_size(sector_t len, const struct dmr_primary_features *f,
			    u32 *region_size, char **error)
{
	if (len < DMR_REGION_MIN) {
		*error = "Target is shorter than the smallest region (8 sectors)";
		return -EINVAL;
	}
	if (f->has_region_size) {
		if (f->region_size > len) {
			*error = "Region size exceeds the target length";
			return -EINVAL;
		}
		*region_size = f->region_size;
		return 0;
	}
	*region_size = DMR_REGION_DEFAULT;
	if (len < DMR_REGION_DEFAULT)
		*region_size = rounddown_pow_of_two(len);
	return 0;
}

u64 dmr_primary_nr_regions(sector_t len, u32 region_size)
{
	return div_u64(len + region_size - 1, region_size);
}

sector_t dmr_primary_region_len(sector_t len, u32 region_size, u64 region)
{
	sector_t start = region * region_size;

	if (start >= len)
		return 0;
	return min_t(sector_t, region_size, len - start);
}

sector_t dmr_primary_log_sectors(u64 nr_regions, unsigned int lbs)
{
	u64 bitset = round_up(nr_regions, BITS_PER_LONG) / BITS_PER_BYTE;

	return round_up(DMR_LOG_HEADER_BYTES + bitset, lbs) >> SECTOR_SHIFT;
}

enum dmr_log_found dmr_primary_log_found(const void *buf, size_t len)
{
	if (len >= sizeof(__le32) &&
	    le32_to_cpu(*(const __le32 *)buf) == DMR_LOG_MAGIC)
		return DMR_LOG_OURS;
	if (!memchr_inv(buf, 0, len))
		return DMR_LOG_BLANK;
	return DMR_LOG_DAMAGED;
}

const char *dmr_primary_log_sync(bool disk, bool sync_all, bool blank)
{
	if (sync_all)
		return "sync";
	if (disk && !blank)
		return NULL;
	return "nosync";
}

unsigned long dmr_primary_throttle(u64 bytes, u32 kib_per_s)
{
	u64 per_s = (u64)kib_per_s * 1024;

	if (!kib_per_s)
		return 0;
	return div64_u64(bytes * HZ + per_s - 1, per_s);
}

enum dmr_pstate dmr_primary_next_state(enum dmr_pstate state,
				       enum dmr_pevent event)
{
	switch (event) {
	case DMR_PEV_REMOTE_ERROR:
		if (state == DMR_P_RUNNING || state == DMR_P_SYNCING)
			return DMR_P_DEGRADED;
		break;
	case DMR_PEV_SYNCED:
		if (state == DMR_P_SYNCING)
			return DMR_P_RUNNING;
		break;
	case DMR_PEV_STOP:
		return DMR_P_DONE;
	}
	return state;
}

static const enum dmr_paction dmr_paction_table[DMR_P_NR_STATES][DMR_PMSG_NR] = {
	[DMR_P_RUNNING] = {
		[DMR_PMSG_CHECKPOINT] = DMR_PACT_BARRIER,
		[DMR_PMSG_STOP] = DMR_PACT_STOP,
		[DMR_PMSG_SYNC_RATE] = DMR_PACT_SYNC_RATE,
	},
	[DMR_P_SYNCING] = {
		[DMR_PMSG_CHECKPOINT] = DMR_PACT_BUSY,
		[DMR_PMSG_STOP] = DMR_PACT_STOP,
		[DMR_PMSG_SYNC_RATE] = DMR_PACT_SYNC_RATE,
	},
	[DMR_P_DEGRADED] = {
		[DMR_PMSG_CHECKPOINT] = DMR_PACT_FAIL,
		[DMR_PMSG_STOP] = DMR_PACT_STOP,
		[DMR_PMSG_SYNC_RATE] = DMR_PACT_SYNC_RATE,
	},
	[DMR_P_DONE] = {
		[DMR_PMSG_CHECKPOINT] = DMR_PACT_FAIL,
		[DMR_PMSG_STOP] = DMR_PACT_NOTHING,
		[DMR_PMSG_SYNC_RATE] = DMR_PACT_SYNC_RATE,
	},
};

enum dmr_paction dmr_primary_msg_action(enum dmr_pstate state,
					enum dmr_pmsg msg)
{
	return dmr_paction_table[state][msg];
}

static const char * const dmr_pstate_names[] = {
	[DMR_P_RUNNING] = "running",
	[DMR_P_SYNCING] = "syncing",
	[DMR_P_DEGRADED] = "degraded",
	[DMR_P_DONE] = "done",
};

const char *dmr_primary_state_name(enum dmr_pstate state)
{
	return state < DMR_P_NR_STATES ? dmr_pstate_names[state] : "unknown";
}

static const char * const dmr_pmsg_names[] = {
	[DMR_PMSG_CHECKPOINT] = "checkpoint",
	[DMR_PMSG_STOP] = "stop",
	[DMR_PMSG_SYNC_RATE] = "sync_rate",
};

int dmr_primary_parse_message(unsigned int argc, char **argv,
			      enum dmr_pmsg *msg, u32 *rate, char **error)
{
	unsigned int i, want;

	if (!argc) {
		*error = "Missing message";
		return -EINVAL;
	}
	for (i = 0; i < DMR_PMSG_NR; i++)
		if (!strcmp(argv[0], dmr_pmsg_names[i]))
			break;
	if (i == DMR_PMSG_NR) {
		*error = "Unrecognised message";
		return -EINVAL;
	}
	want = i == DMR_PMSG_SYNC_RATE ? 2 : 1;
	if (argc != want) {
		*error = want == 1 ? "Message takes no arguments" :
				     "Message takes one argument";
		return -EINVAL;
	}
	if (i == DMR_PMSG_SYNC_RATE && kstrtou32(argv[1], 10, rate)) {
		*error = "Invalid sync_rate: expected KiB/s, 0 for unlimited";
		return -EINVAL;
	}
	*msg = i;
	return 0;
}

/* ---------------------------------------------------------------------------
 * A primary target instance.
 */

struct dmr_primary {
	struct dmr_target base;
	struct dm_target *ti;
	struct mapped_device *md;	/* finds the table a reload replaces */
	struct list_head list;		/* on dmr_primaries */
	struct dm_dev *local;
	struct dm_dev *remote;
	struct dm_dev *metadata;	/* NULL: the core log */
	struct dmr_primary_features features;
	u32 region_size;
	u64 nr_regions;

	struct dm_dirty_log *log;	/* owned by the region hash once made */
	struct dm_region_hash *rh;
	struct dm_io_client *io;
	struct dm_kcopyd_client *kc;
	struct workqueue_struct *wq;
	struct work_struct work;	/* dmr_primary_work() */
	struct delayed_work throttle_work;	/* wakes it for sync_rate */
	wait_queue_head_t recovery_wait;

	spinlock_t lock;		/* the fields below */
	enum dmr_pstate state;
	int error;			/* the first remote error: a positive errno */
	bool event;			/* a state change to signal */
	struct bio_list writes;		/* to be issued by the worker */
	struct bio_list failures;	/* their remote half failed */

	struct mutex msg_lock;		/* one message at a time */
	atomic64_t forwarded;		/* writes that reached the remote */
	u32 sync_rate;			/* KiB/s, 0: unlimited */
	unsigned long sync_next;	/* jiffies: the next copy may start */
	u64 sync_copied;		/* regions copied by this resync */
	ktime_t sync_start;

	bool resumed;			/* preresume ran once: log loaded */
	bool suspended;			/* between postsuspend and preresume */
};

/* What a primary keeps of each bio. */
struct dmr_pbio {
	struct dmr_primary *p;
	region_t region;
	bool counted;			/* pending in the region hash */
	bool forwarded;			/* sent to the remote too */
};

/* Every primary instance, so that a reload finds the table it replaces. */
static LIST_HEAD(dmr_primaries);
static DEFINE_MUTEX(dmr_primaries_lock);

static struct dmr_primary *to_primary(struct dm_target *ti)
{
	return container_of(ti->private, struct dmr_primary, base);
}

static struct dmr_pbio *dmr_pbio(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct dmr_pbio));
}

static const char *dmr_pname(struct dmr_primary *p)
{
	return dm_table_device_name(p->ti->table);
}

static u64 dmr_out_of_sync(struct dmr_primary *p)
{
	return p->nr_regions - p->log->type->get_sync_count(p->log);
}

static enum dmr_pstate dmr_pstate(struct dmr_primary *p)
{
	return READ_ONCE(p->state);
}

static bool dmr_forwarding(enum dmr_pstate state)
{
	return state == DMR_P_RUNNING || state == DMR_P_SYNCING;
}

static void dmr_wake(struct dmr_primary *p)
{
	queue_work(p->wq, &p->work);
}

/*
 * Applies @event to the state; records @err as the error if it is the first.
 * A change is signalled by the worker (a dm event needs process context).
 * Any context.
 */
static void dmr_primary_event(struct dmr_primary *p, enum dmr_pevent event,
			      int err)
{
	enum dmr_pstate old, new;
	unsigned long flags;

	spin_lock_irqsave(&p->lock, flags);
	if (err && !p->error)
		p->error = -err;
	old = p->state;
	new = dmr_primary_next_state(old, event);
	if (new != old) {
		WRITE_ONCE(p->state, new);
		p->event = true;
	}
	spin_unlock_irqrestore(&p->lock, flags);
	if (new != old) {
		if (new == DMR_P_DEGRADED)
			DMERR_LIMIT("%s: remote failed (%d): degraded, writes go to local only",
				    dmr_pname(p), err);
		dmr_wake(p);
	}
}

/* Raises a dm event if the state changed.  Process context. */
static void dmr_signal(struct dmr_primary *p)
{
	bool event;

	spin_lock_irq(&p->lock);
	event = p->event;
	p->event = false;
	spin_unlock_irq(&p->lock);
	if (event)
		dm_table_event(p->ti->table);
}

/* ---------------------------------------------------------------------------
 * Writes.
 */

/*
 * The end of a write's dm_io, in interrupt context:
 *  1. a local error fails the bio;
 *  2. a remote error degrades the primary before the bio completes (so a
 *     checkpoint after it fails);
 *  3. a forwarded write that failed on either device may have left local
 *     and remote different: the worker marks its region out of sync, then
 *     completes it;
 *  4. otherwise the bio completes; dmr_primary_end_io() drops its region.
 */
static void dmr_write_done(unsigned long error, void *context)
{
	struct bio *bio = context;
	struct dmr_pbio *pb = dmr_pbio(bio);
	struct dmr_primary *p = pb->p;
	unsigned long flags;

	if (error & BIT(DMR_LOCAL))
		bio->bi_status = BLK_STS_IOERR;
	if (pb->forwarded && !(error & BIT(DMR_REMOTE)) && bio_sectors(bio))
		atomic64_inc(&p->forwarded);
	if (!pb->forwarded || !error) {
		bio_endio(bio);
		return;
	}
	if (error & BIT(DMR_REMOTE))
		dmr_primary_event(p, DMR_PEV_REMOTE_ERROR, -EIO);
	spin_lock_irqsave(&p->lock, flags);
	bio_list_add(&p->failures, bio);
	spin_unlock_irqrestore(&p->lock, flags);
	dmr_wake(p);
}

/* Issues a write or a flush to local, and to remote too if @forward. */
static void dmr_issue(struct dmr_primary *p, struct bio *bio, bool forward)
{
	sector_t sector = dm_target_offset(p->ti, bio->bi_iter.bi_sector);
	struct dm_io_request req = {
		.bi_opf = REQ_OP_WRITE | REQ_SYNC |
			  (bio->bi_opf & (REQ_FUA | REQ_PREFLUSH)),
		.mem.type = DM_IO_BIO,
		.mem.ptr.bio = bio,
		.notify.fn = dmr_write_done,
		.notify.context = bio,
		.client = p->io,
	};
	struct dm_io_region where[2] = {
		[DMR_LOCAL] = {
			.bdev = p->local->bdev,
			.sector = sector,
			.count = bio_sectors(bio),
		},
		[DMR_REMOTE] = {
			.bdev = p->remote->bdev,
			.sector = sector,
			.count = bio_sectors(bio),
		},
	};

	if (bio->bi_opf & REQ_PREFLUSH) {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = NULL;
	}
	dmr_pbio(bio)->forwarded = forward;
	if (dm_io(&req, forward ? 2 : 1, where, NULL, IOPRIO_DEFAULT))
		dmr_write_done(BIT(DMR_LOCAL) | BIT(DMR_REMOTE), bio);
}

/*
 * The disk log's flush callback, called before it writes regions clean: the
 * writes that made them clean must be durable on both devices first, or a
 * power cut could leave a clean region whose write one device lost (a
 * volatile cache).  As dm-raid1's mirror_flush(): on an error the log marks
 * every region out of sync (a full resync after a reload); a remote error
 * also degrades the primary.  Once degraded, nothing goes to the remote, not
 * even this flush (a hung remote must not stall the VM's writes): local is
 * flushed alone (see "Known issues").  Process context (the worker).
 */
static int dmr_flush_devices(struct dm_target *ti)
{
	struct dmr_primary *p = to_primary(ti);
	struct dm_io_request req = {
		.bi_opf = REQ_OP_WRITE | REQ_PREFLUSH | REQ_SYNC,
		.mem.type = DM_IO_KMEM,
		.mem.ptr.addr = NULL,
		.client = p->io,
	};
	struct dm_io_region where[2] = {
		[DMR_LOCAL] = { .bdev = p->local->bdev },
		[DMR_REMOTE] = { .bdev = p->remote->bdev },
	};
	unsigned long error = 0;
	unsigned int n = dmr_forwarding(dmr_pstate(p)) ? 2 : 1;

	if (dm_io(&req, n, where, &error, IOPRIO_DEFAULT) && !error)
		error = BIT(n) - 1;	/* each device asked */
	if (!error)
		return 0;
	if (error & BIT(DMR_REMOTE))
		dmr_primary_event(p, DMR_PEV_REMOTE_ERROR, -EIO);
	DMERR_LIMIT("%s: cannot flush %s before regions go in sync: all out of sync",
		    dmr_pname(p), error & BIT(DMR_LOCAL) ? "local" : "the remote");
	return -EIO;
}

/* Counts @bios pending in their regions (marks the regions in the log). */
static void dmr_inc_pending(struct dmr_primary *p, struct bio_list *bios)
{
	struct bio *bio;

	dm_rh_inc_pending(p->rh, bios);
	bio_list_for_each(bio, bios)
		dmr_pbio(bio)->counted = true;
}

static void dmr_fail_bios(struct bio_list *bios)
{
	struct bio *bio;

	while ((bio = bio_list_pop(bios)))
		bio_io_error(bio);
}

/*
 * Issues the writes the worker took:
 *  1. sorts them: flushes; writes to in-sync regions; writes to out-of-sync
 *     regions (local only); writes to regions being copied wait in the
 *     region hash, which hands them back when the copy ends;
 *  2. counts the writes pending in their regions and flushes the log, so a
 *     region is marked dirty on disk before any write to it is issued;
 *  3. reads the state once: while it forwards, writes to in-sync regions
 *     and flushes go to both devices; otherwise they go to local only and
 *     their regions are marked out of sync first.
 */
static void dmr_do_writes(struct dmr_primary *p, struct bio_list *writes)
{
	struct bio_list flushes, sync, nosync;
	struct bio *bio;
	bool forward;

	bio_list_init(&flushes);
	bio_list_init(&sync);
	bio_list_init(&nosync);
	while ((bio = bio_list_pop(writes))) {
		if (bio->bi_opf & REQ_PREFLUSH) {
			bio_list_add(&flushes, bio);
			continue;
		}
		switch (dm_rh_get_state(p->rh, dmr_pbio(bio)->region, 1)) {
		case DM_RH_CLEAN:
		case DM_RH_DIRTY:
			bio_list_add(&sync, bio);
			break;
		case DM_RH_NOSYNC:
			bio_list_add(&nosync, bio);
			break;
		default:
			dm_rh_delay(p->rh, bio);
			break;
		}
	}

	dmr_inc_pending(p, &sync);
	dmr_inc_pending(p, &nosync);
	if (dm_rh_flush(p->rh)) {
		DMERR_LIMIT("%s: cannot write the out-of-sync log: failing writes",
			    dmr_pname(p));
		dmr_fail_bios(&sync);
		dmr_fail_bios(&nosync);
	}

	forward = dmr_forwarding(dmr_pstate(p));
	while ((bio = bio_list_pop(&flushes)))
		dmr_issue(p, bio, forward);
	while ((bio = bio_list_pop(&sync))) {
		if (!forward)
			dm_rh_mark_nosync(p->rh, bio);
		dmr_issue(p, bio, forward);
	}
	while ((bio = bio_list_pop(&nosync)))
		dmr_issue(p, bio, false);
}

/* Forwarded writes that failed on a device: their regions go out of sync. */
static void dmr_do_failures(struct dmr_primary *p, struct bio_list *failures)
{
	struct bio *bio;

	while ((bio = bio_list_pop(failures))) {
		dm_rh_mark_nosync(p->rh, bio);
		bio_endio(bio);
	}
}

/* ---------------------------------------------------------------------------
 * Resync: dm-kcopyd copies out-of-sync regions local -> remote.
 */

static void dmr_copied(int read_err, unsigned long write_err, void *context)
{
	struct dm_region *reg = context;
	struct dmr_primary *p = dm_rh_region_context(reg);

	if (read_err || write_err) {
		DMERR_LIMIT("%s: resync of region %llu failed (%s)", dmr_pname(p),
			    (unsigned long long)dm_rh_get_region_key(reg),
			    read_err ? "local read" : "remote write");
		dmr_primary_event(p, DMR_PEV_REMOTE_ERROR, -EIO);
	} else {
		p->sync_copied++;
	}
	dm_rh_recovery_end(reg, !(read_err || write_err));
}

/* Starts the copy of a quiesced region, and charges it to sync_rate. */
static void dmr_copy_region(struct dmr_primary *p, struct dm_region *reg)
{
	region_t key = dm_rh_get_region_key(reg);
	sector_t len = dmr_primary_region_len(p->ti->len, p->region_size, key);
	struct dm_io_region from = {
		.bdev = p->local->bdev,
		.sector = (sector_t)key * p->region_size,
		.count = len,
	};
	struct dm_io_region to = from;
	unsigned long now = jiffies;

	to.bdev = p->remote->bdev;
	if (time_before(p->sync_next, now))
		p->sync_next = now;
	p->sync_next += dmr_primary_throttle((u64)len << SECTOR_SHIFT,
					     READ_ONCE(p->sync_rate));
	dm_kcopyd_copy(p->kc, &from, 1, &to, 0, dmr_copied, reg);
}

/*
 * Starts copies while syncing and sync_rate allows: the region hash quiesces
 * the next out-of-sync regions (their writes in flight end, new ones wait),
 * then each quiesced one is copied.  A region quiesced when the primary no
 * longer syncs is given back out of sync.
 */
static void dmr_do_recovery(struct dmr_primary *p)
{
	struct dm_region *reg;

	if (dmr_pstate(p) == DMR_P_SYNCING) {
		if (time_before(jiffies, p->sync_next))
			queue_delayed_work(p->wq, &p->throttle_work,
					   p->sync_next - jiffies);
		else
			dm_rh_recovery_prepare(p->rh);
	}
	while ((reg = dm_rh_recovery_start(p->rh))) {
		if (dmr_pstate(p) == DMR_P_SYNCING)
			dmr_copy_region(p, reg);
		else
			dm_rh_recovery_end(reg, 0);
	}
}

/* Syncing ends when no region is out of sync: running, and an event. */
static void dmr_check_synced(struct dmr_primary *p)
{
	if (dmr_pstate(p) != DMR_P_SYNCING || dmr_out_of_sync(p))
		return;
	dmr_primary_event(p, DMR_PEV_SYNCED, 0);
	DMINFO("%s: resync done: %llu regions copied in %lld ms", dmr_pname(p),
	       p->sync_copied, ktime_ms_delta(ktime_get(), p->sync_start));
}

/*
 * The worker: region states, failed writes, copies, new writes, the state.
 * One instance runs at a time, so the log is only touched here (and by the
 * suspend/resume hooks, while no bio is in flight).
 */
static void dmr_primary_work(struct work_struct *w)
{
	struct dmr_primary *p = container_of(w, struct dmr_primary, work);
	struct bio_list writes, failures;

	dm_rh_update_states(p->rh, 1);

	spin_lock_irq(&p->lock);
	writes = p->writes;
	bio_list_init(&p->writes);
	failures = p->failures;
	bio_list_init(&p->failures);
	spin_unlock_irq(&p->lock);

	dmr_do_failures(p, &failures);
	dmr_do_recovery(p);
	dmr_do_writes(p, &writes);
	dmr_check_synced(p);
	dmr_signal(p);
}

static void dmr_throttle_work(struct work_struct *w)
{
	struct dmr_primary *p = container_of(to_delayed_work(w),
					     struct dmr_primary, throttle_work);

	dmr_wake(p);
}

/* Region hash callbacks. */
static void dmr_rh_dispatch(void *context, struct bio_list *bios)
{
	struct dmr_primary *p = context;
	unsigned long flags;

	if (bio_list_empty(bios))
		return;
	spin_lock_irqsave(&p->lock, flags);
	bio_list_merge(&p->writes, bios);
	spin_unlock_irqrestore(&p->lock, flags);
	dmr_wake(p);
}

static void dmr_rh_wakeup(void *context)
{
	dmr_wake(context);
}

static void dmr_rh_recovery_waiters(void *context)
{
	struct dmr_primary *p = context;

	wake_up_all(&p->recovery_wait);
}

/* ---------------------------------------------------------------------------
 * Construction.
 */

static int dmr_open(struct dm_target *ti, const char *path,
		    struct dm_dev **dev, char *error)
{
	int r;

	r = dm_get_device(ti, path, dm_table_get_mode(ti->table), dev);
	if (r)
		ti->error = error;
	return r;
}

static bool dmr_same(struct dm_dev *a, struct dm_dev *b)
{
	return a->bdev->bd_dev == b->bdev->bd_dev;
}

static int dmr_fits(struct dm_target *ti, struct dm_dev *dev, char *error)
{
	if (ti->len > bdev_nr_sectors(dev->bdev)) {
		ti->error = error;
		return -EINVAL;
	}
	return 0;
}

static int dmr_primary_get_devs(struct dm_target *ti, struct dmr_primary *p,
				struct dm_arg_set *as)
{
	int r;

	r = dmr_open(ti, dm_shift_arg(as), &p->local,
		     "Error opening local device");
	if (r)
		return r;
	r = dmr_open(ti, dm_shift_arg(as), &p->remote,
		     "Error opening remote device");
	if (r)
		return r;
	if (dmr_same(p->local, p->remote)) {
		ti->error = "Remote device must differ from the local device";
		return -EINVAL;
	}
	r = dmr_fits(ti, p->local, "Target length exceeds the local device");
	if (r)
		return r;
	return dmr_fits(ti, p->remote, "Target length exceeds the remote device");
}

static int dmr_primary_get_metadata(struct dm_target *ti,
				    struct dmr_primary *p)
{
	sector_t need;
	int r;

	if (!p->features.metadata)
		return 0;
	r = dmr_open(ti, p->features.metadata, &p->metadata,
		     "Error opening metadata device");
	if (r)
		return r;
	if (dmr_same(p->metadata, p->local)) {
		ti->error = "Metadata device must differ from the local device";
		return -EINVAL;
	}
	if (dmr_same(p->metadata, p->remote)) {
		ti->error = "Metadata device must differ from the remote device";
		return -EINVAL;
	}
	need = dmr_primary_log_sectors(p->nr_regions,
				       bdev_logical_block_size(p->metadata->bdev));
	if (need > bdev_nr_sectors(p->metadata->bdev)) {
		ti->error = "Metadata device is too small for the out-of-sync log";
		return -EINVAL;
	}
	return 0;
}

/*
 * What the metadata device's log area holds (dmr_primary_log_found()).  The
 * magic is written by the first resume of the first table and never changes,
 * so a table this one replaces cannot change the answer.
 */
static int dmr_log_read_found(struct dmr_primary *p, enum dmr_log_found *found)
{
	struct dm_io_region where = {
		.bdev = p->metadata->bdev,
		.sector = 0,
		.count = dmr_primary_log_sectors(p->nr_regions,
			bdev_logical_block_size(p->metadata->bdev)),
	};
	struct dm_io_request req = {
		.bi_opf = REQ_OP_READ,
		.mem.type = DM_IO_VMA,
		.client = p->io,
	};
	void *buf;
	int r;

	buf = vmalloc(where.count << SECTOR_SHIFT);
	if (!buf)
		return -ENOMEM;
	req.mem.ptr.vma = buf;
	r = dm_io(&req, 1, &where, NULL, IOPRIO_DEFAULT);
	if (!r)
		*found = dmr_primary_log_found(buf, where.count << SECTOR_SHIFT);
	vfree(buf);
	return r;
}

/*
 * The out-of-sync log: dm-dirty-log's "disk" log on the metadata device, or
 * its "core" log; see dmr_primary_log_sync() for how it starts.
 */
static int dmr_primary_make_log(struct dm_target *ti, struct dmr_primary *p)
{
	const char *sync;
	enum dmr_log_found found = DMR_LOG_BLANK;
	char size[16];
	char *argv[3];
	unsigned int argc = 0;
	int r;

	if (p->metadata) {
		r = dmr_log_read_found(p, &found);
		if (r) {
			ti->error = "Cannot read the metadata device";
			return r;
		}
		argv[argc++] = p->metadata->name;
	}
	if (found == DMR_LOG_DAMAGED && !p->features.sync_all) {
		ti->error = "Metadata holds no dm-log and is not zeroed: zero it or use sync_all";
		return -EINVAL;
	}
	snprintf(size, sizeof(size), "%u", p->region_size);
	argv[argc++] = size;
	sync = dmr_primary_log_sync(p->metadata, p->features.sync_all,
				    found != DMR_LOG_OURS);
	if (sync)
		argv[argc++] = (char *)sync;

	p->log = dm_dirty_log_create(p->metadata ? "disk" : "core", ti,
				     dmr_flush_devices, argc, argv);
	if (!p->log) {
		ti->error = "Cannot create the out-of-sync log";
		return -EINVAL;
	}
	p->rh = dm_region_hash_create(p, dmr_rh_dispatch, dmr_rh_wakeup,
				      dmr_rh_recovery_waiters, ti->begin,
				      DMR_MAX_RECOVERY, p->log, p->region_size,
				      p->nr_regions);
	if (IS_ERR(p->rh)) {
		p->rh = NULL;
		ti->error = "Cannot create the region hash";
		return -ENOMEM;
	}
	return 0;
}

static int dmr_primary_make_workers(struct dm_target *ti,
				    struct dmr_primary *p)
{
	p->io = dm_io_client_create();
	if (IS_ERR(p->io)) {
		p->io = NULL;
		ti->error = "Cannot create the dm-io client";
		return -ENOMEM;
	}
	p->kc = dm_kcopyd_client_create(NULL);
	if (IS_ERR(p->kc)) {
		p->kc = NULL;
		ti->error = "Cannot create the dm-kcopyd client";
		return -ENOMEM;
	}
	p->wq = alloc_workqueue("dmr-primary", WQ_MEM_RECLAIM, 0);
	if (!p->wq) {
		ti->error = "Cannot create the primary's workqueue";
		return -ENOMEM;
	}
	return 0;
}

/* Frees what a primary holds; everything may be missing. */
static void dmr_primary_free(struct dm_target *ti, struct dmr_primary *p)
{
	if (p->wq) {
		cancel_delayed_work_sync(&p->throttle_work);
		destroy_workqueue(p->wq);
	}
	if (p->kc)
		dm_kcopyd_client_destroy(p->kc);
	if (p->io)
		dm_io_client_destroy(p->io);
	if (p->rh)
		dm_region_hash_destroy(p->rh);	/* and its log */
	else if (p->log)
		dm_dirty_log_destroy(p->log);
	if (p->metadata)
		dm_put_device(ti, p->metadata);
	if (p->remote)
		dm_put_device(ti, p->remote);
	if (p->local)
		dm_put_device(ti, p->local);
	kfree(p);
}

static struct dmr_primary *dmr_primary_alloc(struct dm_target *ti)
{
	struct dmr_primary *p = kzalloc(sizeof(*p), GFP_KERNEL);

	if (!p)
		return NULL;
	p->base.ops = &dmr_primary_ops;
	p->ti = ti;
	p->md = dm_table_get_md(ti->table);
	INIT_LIST_HEAD(&p->list);
	INIT_WORK(&p->work, dmr_primary_work);
	INIT_DELAYED_WORK(&p->throttle_work, dmr_throttle_work);
	init_waitqueue_head(&p->recovery_wait);
	spin_lock_init(&p->lock);
	bio_list_init(&p->writes);
	bio_list_init(&p->failures);
	mutex_init(&p->msg_lock);
	atomic64_set(&p->forwarded, 0);
	p->state = DMR_P_RUNNING;
	p->sync_next = jiffies;
	return p;
}

static int dmr_primary_ctr(struct dm_target *ti, struct dm_arg_set *as)
{
	struct dmr_primary *p;
	int r;

	if (as->argc < 2) {
		ti->error = "Not enough arguments: need <local> <remote>";
		return -EINVAL;
	}
	p = dmr_primary_alloc(ti);
	if (!p) {
		ti->error = "Cannot allocate primary context";
		return -ENOMEM;
	}

	r = dmr_primary_get_devs(ti, p, as);
	if (r)
		goto bad;
	r = dmr_primary_parse_features(as, &p->features, &ti->error);
	if (r)
		goto bad;
	r = dmr_primary_region_size(ti->len, &p->features, &p->region_size,
				    &ti->error);
	if (r)
		goto bad;
	p->nr_regions = dmr_primary_nr_regions(ti->len, p->region_size);
	r = dmr_primary_get_metadata(ti, p);
	if (r)
		goto bad;
	r = dmr_primary_make_workers(ti, p);
	if (r)
		goto bad;
	r = dmr_primary_make_log(ti, p);
	if (r)
		goto bad;

	r = dm_set_target_max_io_len(ti, p->region_size);
	if (r)
		goto bad;
	ti->num_flush_bios = 1;
	ti->per_io_data_size = sizeof(struct dmr_pbio);
	ti->private = &p->base;

	mutex_lock(&dmr_primaries_lock);
	list_add(&p->list, &dmr_primaries);
	mutex_unlock(&dmr_primaries_lock);
	return 0;

bad:
	dmr_primary_free(ti, p);
	return r;
}

static void dmr_primary_dtr(struct dm_target *ti)
{
	struct dmr_primary *p = to_primary(ti);

	mutex_lock(&dmr_primaries_lock);
	list_del(&p->list);
	mutex_unlock(&dmr_primaries_lock);
	dmr_primary_free(ti, p);
}

/* ---------------------------------------------------------------------------
 * The data path.
 */

static int dmr_primary_map(struct dm_target *ti, struct bio *bio)
{
	struct dmr_primary *p = to_primary(ti);
	struct dmr_pbio *pb = dmr_pbio(bio);

	pb->p = p;
	pb->counted = false;
	pb->forwarded = false;
	pb->region = dm_rh_bio_to_region(p->rh, bio);

	if (bio_op(bio) == REQ_OP_READ) {
		bio_set_dev(bio, p->local->bdev);
		bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
		return DM_MAPIO_REMAPPED;
	}
	if (bio_op(bio) != REQ_OP_WRITE)
		return DM_MAPIO_KILL;

	spin_lock_irq(&p->lock);
	bio_list_add(&p->writes, bio);
	spin_unlock_irq(&p->lock);
	dmr_wake(p);
	return DM_MAPIO_SUBMITTED;
}

static int dmr_primary_end_io(struct dm_target *ti, struct bio *bio,
			      blk_status_t *error)
{
	struct dmr_pbio *pb = dmr_pbio(bio);

	if (pb->counted) {
		pb->counted = false;
		dm_rh_dec(pb->p->rh, pb->region);
	}
	return DM_ENDIO_DONE;
}

/* ---------------------------------------------------------------------------
 * Suspend, resume and reload.
 */

/* Marks out of sync, in @p, the sectors @old holds out of sync. */
static void dmr_adopt_from(struct dmr_primary *p, struct dmr_primary *old)
{
	struct dm_dirty_log *log = p->log;
	u64 r, n, first, last;

	for (r = 0; r < old->nr_regions; r++) {
		if (old->log->type->in_sync(old->log, r, 0))
			continue;
		first = r * old->region_size;
		last = min_t(u64, first + old->region_size, p->ti->len);
		for (n = first / p->region_size;
		     n * p->region_size < last && n < p->nr_regions; n++) {
			log->type->mark_region(log, n);
			if (log->type->in_sync(log, n, 0))
				log->type->set_region_sync(log, n, 0);
		}
	}
}

/*
 * A reload: the table this one replaces (same mapped device, same local
 * device, suspended) gives its out-of-sync regions over, so that a core log
 * loses none of them, and its sync_rate.  The old table is suspended: no bio, no copy, no
 * worker touches its log.
 */
static void dmr_adopt(struct dmr_primary *p)
{
	struct dmr_primary *old;

	mutex_lock(&dmr_primaries_lock);
	list_for_each_entry(old, &dmr_primaries, list) {
		if (old == p || old->md != p->md || !old->resumed ||
		    !old->suspended || !dmr_same(old->local, p->local))
			continue;
		dmr_adopt_from(p, old);
		p->sync_rate = READ_ONCE(old->sync_rate);
	}
	mutex_unlock(&dmr_primaries_lock);
}

/*
 * The first resume of a table:
 *  1. loads the log (a disk log reads the metadata device: after the old
 *     table's postsuspend flushed it);
 *  2. adopts the out-of-sync regions of the table it replaces;
 *  3. makes the marks durable;
 *  4. syncs if any region is out of sync.
 */
static int dmr_primary_load(struct dmr_primary *p)
{
	struct dm_dirty_log *log = p->log;
	int r;

	r = log->type->resume(log);
	if (r) {
		DMERR("%s: cannot load the out-of-sync log: %d", dmr_pname(p), r);
		return r;
	}
	dmr_adopt(p);
	r = log->type->flush(log);
	if (r) {
		DMERR("%s: cannot write the out-of-sync log: %d", dmr_pname(p), r);
		return r;
	}
	if (dmr_out_of_sync(p)) {
		WRITE_ONCE(p->state, DMR_P_SYNCING);
		p->sync_start = ktime_get();
		DMINFO("%s: %llu of %llu regions out of sync: syncing",
		       dmr_pname(p), dmr_out_of_sync(p), p->nr_regions);
	}
	p->resumed = true;
	return 0;
}

static int dmr_primary_preresume(struct dm_target *ti)
{
	struct dmr_primary *p = to_primary(ti);
	int r;

	if (!p->resumed) {
		r = dmr_primary_load(p);
		if (r)
			return r;
	} else {
		r = p->log->type->resume(p->log);
		if (r)
			DMERR("%s: cannot reload the out-of-sync log: %d",
			      dmr_pname(p), r);
	}
	mutex_lock(&dmr_primaries_lock);
	p->suspended = false;
	mutex_unlock(&dmr_primaries_lock);
	p->sync_next = jiffies;
	dm_rh_start_recovery(p->rh);
	dmr_wake(p);
	return 0;
}

/*
 * No bio is in flight: stop the copies, let the worker finish, and flush
 * the log, so a new table (or a reboot) finds every region's state.
 */
static void dmr_primary_postsuspend(struct dm_target *ti)
{
	struct dmr_primary *p = to_primary(ti);
	struct dm_dirty_log *log = p->log;

	if (!p->resumed)
		return;
	dm_rh_stop_recovery(p->rh);
	wait_event(p->recovery_wait, !dm_rh_recovery_in_flight(p->rh));
	cancel_delayed_work_sync(&p->throttle_work);
	flush_workqueue(p->wq);
	dm_rh_update_states(p->rh, 1);
	if (log->type->postsuspend && log->type->postsuspend(log))
		DMERR("%s: cannot flush the out-of-sync log", dmr_pname(p));
	mutex_lock(&dmr_primaries_lock);
	p->suspended = true;
	mutex_unlock(&dmr_primaries_lock);
}

/* ---------------------------------------------------------------------------
 * Status and messages.
 */

static void dmr_primary_status_info(struct dm_target *ti, char *result,
				    unsigned int maxlen)
{
	struct dmr_primary *p = to_primary(ti);
	enum dmr_pstate state;
	unsigned int sz = 0;
	int error;

	spin_lock_irq(&p->lock);
	state = p->state;
	error = p->error;
	spin_unlock_irq(&p->lock);
	DMEMIT("primary %s %d %llu %llu/%llu", dmr_primary_state_name(state),
	       error, (unsigned long long)atomic64_read(&p->forwarded),
	       dmr_out_of_sync(p), p->nr_regions);
}

static void dmr_primary_status_table(struct dm_target *ti, char *result,
				     unsigned int maxlen)
{
	struct dmr_primary *p = to_primary(ti);
	struct dmr_primary_features *f = &p->features;
	unsigned int sz = 0;

	DMEMIT("primary %s %s %u", p->local->name, p->remote->name,
	       (p->metadata ? 2 : 0) + (f->has_region_size ? 2 : 0) +
	       (f->sync_all ? 1 : 0));
	if (p->metadata)
		DMEMIT(" metadata %s", p->metadata->name);
	if (f->has_region_size)
		DMEMIT(" region_size %u", f->region_size);
	if (f->sync_all)
		DMEMIT(" sync_all");
}

/*
 * The checkpoint barrier, with the VM paused:
 *  1. every write acknowledged before this message completed on the
 *     remote, or degraded the primary before it completed (the caller saw
 *     the state running);
 *  2. a flush of the remote makes them durable there;
 *  3. a failure seen meanwhile fails the checkpoint too.
 * It never waits for the worker: it works while the device is suspended.
 */
static int dmr_primary_barrier(struct dmr_primary *p)
{
	int r;

	r = blkdev_issue_flush(p->remote->bdev);
	if (r) {
		dmr_primary_event(p, DMR_PEV_REMOTE_ERROR, r);
		DMERR("%s: checkpoint failed: remote flush: %d", dmr_pname(p), r);
		return -EIO;
	}
	if (dmr_pstate(p) != DMR_P_RUNNING) {
		DMERR("%s: checkpoint failed: %s", dmr_pname(p),
		      dmr_primary_state_name(dmr_pstate(p)));
		return -EIO;
	}
	return 0;
}

/* Stop: forwarding ends for good; no batch still forwards once it returns. */
static void dmr_primary_stop(struct dmr_primary *p)
{
	dmr_primary_event(p, DMR_PEV_STOP, 0);
	flush_work(&p->work);
	dmr_signal(p);
}

static void dmr_primary_set_rate(struct dmr_primary *p, u32 rate)
{
	WRITE_ONCE(p->sync_rate, rate);
	WRITE_ONCE(p->sync_next, jiffies);
	mod_delayed_work(p->wq, &p->throttle_work, 0);
}

static int dmr_primary_message(struct dm_target *ti, unsigned int argc,
			       char **argv)
{
	struct dmr_primary *p = to_primary(ti);
	enum dmr_pstate state;
	enum dmr_pmsg msg;
	char *error;
	u32 rate = 0;
	int r;

	r = dmr_primary_parse_message(argc, argv, &msg, &rate, &error);
	if (r) {
		DMERR("%s: %s: %s", dmr_pname(p), error, argc ? argv[0] : "");
		return r;
	}

	mutex_lock(&p->msg_lock);
	state = dmr_pstate(p);
	switch (dmr_primary_msg_action(state, msg)) {
	case DMR_PACT_NOTHING:
		break;
	case DMR_PACT_BARRIER:
		r = dmr_primary_barrier(p);
		break;
	case DMR_PACT_BUSY:
		DMERR("%s: checkpoint refused: syncing, %llu regions out of sync",
		      dmr_pname(p), dmr_out_of_sync(p));
		r = -EBUSY;
		break;
	case DMR_PACT_FAIL:
		DMERR("%s: checkpoint failed: %s, remote error %d",
		      dmr_pname(p), dmr_primary_state_name(state),
		      READ_ONCE(p->error));
		r = -EIO;
		break;
	case DMR_PACT_STOP:
		dmr_primary_stop(p);
		break;
	case DMR_PACT_SYNC_RATE:
		dmr_primary_set_rate(p, rate);
		break;
	}
	mutex_unlock(&p->msg_lock);
	return r;
}

static int dmr_primary_iterate_devices(struct dm_target *ti,
				       iterate_devices_callout_fn fn,
				       void *data)
{
	struct dmr_primary *p = to_primary(ti);
	int r;

	r = fn(ti, p->local, 0, ti->len, data);
	if (!r)
		r = fn(ti, p->remote, 0, ti->len, data);
	return r;
}

const struct dmr_mode_ops dmr_primary_ops = {
	.name = "primary",
	.ctr = dmr_primary_ctr,
	.dtr = dmr_primary_dtr,
	.map = dmr_primary_map,
	.end_io = dmr_primary_end_io,
	.preresume = dmr_primary_preresume,
	.postsuspend = dmr_primary_postsuspend,
	.status_info = dmr_primary_status_info,
	.status_table = dmr_primary_status_table,
	.message = dmr_primary_message,
	.iterate_devices = dmr_primary_iterate_devices,
};
