/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: the primary mode's pure helpers, for the KUnit suites.
 *
 * Everything else of the primary is private to dm-replication-primary.c; the
 * target reaches it through dmr_primary_ops (dm-replication.h).
 */
#ifndef DM_REPLICATION_PRIMARY_H
#define DM_REPLICATION_PRIMARY_H

#include <linux/bits.h>
#include <linux/device-mapper.h>
#include <linux/types.h>

/* Regions are in 512-byte sectors: a power of two from 4 KiB to 1 GiB. */
#define DMR_REGION_MIN		8U
#define DMR_REGION_MAX		BIT(21)
#define DMR_REGION_DEFAULT	1024U	/* 512 KiB */

/* The disk log's header area before its bitmap, in bytes (dm-log.c). */
#define DMR_LOG_HEADER_BYTES	1024U

/* Replication states of a primary, as reported by status. */
enum dmr_pstate {
	DMR_P_RUNNING,		/* every write reaches both devices */
	DMR_P_SYNCING,		/* out-of-sync regions are being copied */
	DMR_P_DEGRADED,		/* the remote failed: local only */
	DMR_P_DONE,		/* stopped: local only, for good */
	DMR_P_NR_STATES,
};

/* What happens to a primary: the inputs of its state table. */
enum dmr_pevent {
	DMR_PEV_REMOTE_ERROR,	/* a write or a copy to the remote failed */
	DMR_PEV_SYNCED,		/* the last out-of-sync region was copied */
	DMR_PEV_STOP,		/* the stop message */
};

/* Messages understood by a primary. */
enum dmr_pmsg {
	DMR_PMSG_CHECKPOINT,
	DMR_PMSG_STOP,
	DMR_PMSG_SYNC_RATE,
	DMR_PMSG_NR,
};

/* What a message does in a state. */
enum dmr_paction {
	DMR_PACT_NOTHING,	/* succeed, change nothing */
	DMR_PACT_BARRIER,	/* flush the remote, succeed if still running */
	DMR_PACT_BUSY,		/* fail with EBUSY: syncing */
	DMR_PACT_FAIL,		/* fail with EIO: nothing is forwarded */
	DMR_PACT_STOP,
	DMR_PACT_SYNC_RATE,
};

/* Feature arguments of a primary table. */
struct dmr_primary_features {
	const char *metadata;	/* the out-of-sync log's device, or NULL */
	u32 region_size;	/* in sectors */
	bool has_region_size;	/* given in the table */
	bool sync_all;
};

/*
 * dmr_primary_parse_features() - parse a primary table's feature arguments
 * @as: the arguments after <remote dev>: [<#feature args> [<feature arg>]*]
 * @f: filled with the features on success (defaults for those not given)
 * @error: set to a message for ti->error on failure
 *
 * Return: 0, or -EINVAL with @error set.
 */
int dmr_primary_parse_features(struct dm_arg_set *as,
			       struct dmr_primary_features *f, char **error);

/*
 * dmr_primary_region_size() - the region size a table of @len sectors uses
 *
 * A region size from the table must fit in the target; without one the
 * default is lowered to the largest power of two that fits.
 *
 * Return: 0 with *@region_size set, or -EINVAL with @error set.
 */
int dmr_primary_region_size(sector_t len, const struct dmr_primary_features *f,
			    u32 *region_size, char **error);

/* The number of regions of @len sectors, the last one maybe partial. */
u64 dmr_primary_nr_regions(sector_t len, u32 region_size);

/* The length of region @region in sectors: region_size but for the last. */
sector_t dmr_primary_region_len(sector_t len, u32 region_size, u64 region);

/* The sectors a disk log of @nr_regions needs on a device of block @lbs. */
sector_t dmr_primary_log_sectors(u64 nr_regions, unsigned int lbs);

/* What the metadata device's log area holds; see dmr_primary_log_found(). */
enum dmr_log_found {
	DMR_LOG_BLANK,		/* every byte zero: no log yet */
	DMR_LOG_OURS,		/* dm-log's magic: a log to load as it is */
	DMR_LOG_DAMAGED,	/* neither: a damaged log, or another's data */
};

/*
 * dmr_primary_log_found() - classify the log area @buf of @len bytes
 *
 * A damaged magic must not pass for a blank device: dm-log would start a
 * new log with every region in sync and forget the regions the remote
 * lacks.  Only an area of zeros is blank.
 */
enum dmr_log_found dmr_primary_log_found(const void *buf, size_t len);

/*
 * dmr_primary_log_sync() - the sync argument of the dm-dirty-log to create
 * @disk: a disk log (metadata), else a core log
 * @sync_all: the feature
 * @blank: the metadata device holds no log yet
 *
 * sync_all makes every region out of sync ("sync"); a disk log that exists
 * keeps what it holds (no argument: dm-log's "nosync" would ignore it); a
 * new log starts with every region in sync ("nosync").
 */
const char *dmr_primary_log_sync(bool disk, bool sync_all, bool blank);

/*
 * dmr_primary_throttle() - how long a copy of @bytes takes at @kib_per_s
 *
 * Return: jiffies the next copy waits after this one started; 0 when the
 * rate is 0 (unlimited).
 */
unsigned long dmr_primary_throttle(u64 bytes, u32 kib_per_s);

/* The state after @event in @state: the primary's state table. */
enum dmr_pstate dmr_primary_next_state(enum dmr_pstate state,
				       enum dmr_pevent event);

/* What message @msg does in @state. */
enum dmr_paction dmr_primary_msg_action(enum dmr_pstate state,
					enum dmr_pmsg msg);

const char *dmr_primary_state_name(enum dmr_pstate state);

/*
 * dmr_primary_parse_message() - parse a primary's message
 * @rate: set to the KiB/s of sync_rate
 *
 * Return: 0, or -EINVAL with @error set.
 */
int dmr_primary_parse_message(unsigned int argc, char **argv,
			      enum dmr_pmsg *msg, u32 *rate, char **error);

#endif /* DM_REPLICATION_PRIMARY_H */
