/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: COLO-style block replication as a device-mapper target.
 *
 * What every file of the target shares: the modes, states and messages, and
 * the callbacks of a mode.  The files, each one idea, call one way:
 *
 *   dm-replication.c         the target: modes, tables, status, messages
 *   dm-replication-io.c      the secondary's and the port's data path
 *   dm-replication-commit.c  the failover's merge-down commit
 *   dm-replication-core.c    sessions: loaded state, gate, cells, headers
 *   dm-replication-cow.c     the stores: mapping, allocator, records
 *   dm-replication-format.c  the stores' on-disk format
 *
 * Each has a header of its own with its API, documented at the declaration;
 * dm-replication-test.h holds what is exported only for KUnit.
 */
#ifndef DM_REPLICATION_H
#define DM_REPLICATION_H

#include <linux/device-mapper.h>
#include <linux/types.h>

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
/* The most chunks a port's first touch copies at once (port_copy_chunks). */
#define DMR_PORT_COPY_CHUNKS_MAX	256U
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
	bool has_port_copy_chunks;
	unsigned int port_copy_chunks;	/* a power of two */
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

/*
 * What ti->private points to in every mode: the first member of the mode's
 * own structure, which the mode's callbacks reach with container_of().
 */
struct dmr_target {
	const struct dmr_mode_ops *ops;
};

/* The primary mode (dm-replication-primary.c). */
extern const struct dmr_mode_ops dmr_primary_ops;

/* The name of a state, as status reports it ("unknown" out of range). */
const char *dmr_state_name(enum dmr_state state);

#endif /* DM_REPLICATION_H */
