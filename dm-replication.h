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

#include <linux/device-mapper.h>
#include <linux/list.h>
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
};

/* Replication states of a secondary, as reported by status. */
enum dmr_state {
	DMR_STATE_RUNNING,
	DMR_STATE_FAILOVER,
	DMR_STATE_FAILOVER_FAILED,
	DMR_STATE_DONE,
};

/* Feature arguments of a secondary table. */
struct dmr_secondary_features {
	bool has_low_water_mark;
	unsigned int low_water_mark;	/* in free chunks */
};

/*
 * A replication session: what the top device and the port of one secondary
 * device share.  Found by the secondary device's dev_t.  It lives while a
 * table holds it: a port, or a reloaded top table, may outlive the table that
 * made it.  All fields are protected by the session list's mutex.
 */
struct dmr_session {
	struct list_head list;		/* on the global session list */
	dev_t secondary_dev;
	struct mapped_device *top_md;	/* the secondary's mapped device */
	struct mapped_device *port_md;	/* the port's, or NULL */
	unsigned int nr_top;		/* secondary tables holding it */
	unsigned int nr_port;		/* port tables holding it */
	enum dmr_state state;
};

struct dmr_mode_ops;

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

/* A primary target instance. */
struct dmr_primary {
	struct dmr_target base;
	struct dm_target *ti;
	struct dm_dev *local;
	struct dm_dev *remote;
};

/* A port target instance. */
struct dmr_port {
	struct dmr_target base;
	struct dm_target *ti;
	struct dm_dev *secondary;
	struct dmr_session *session;
};

/* dm-replication.c: argument parsing, shared with the KUnit suites. */
int dmr_parse_mode(const char *arg, enum dmr_mode *mode, char **error);
int dmr_parse_secondary_features(struct dm_arg_set *as,
				 struct dmr_secondary_features *f,
				 char **error);
int dmr_parse_no_features(struct dm_arg_set *as, char **error);
int dmr_parse_message(unsigned int argc, char **argv, enum dmr_msg *msg,
		      char **error);
const char *dmr_state_name(enum dmr_state state);

/* dm-replication-cow.c: chunk geometry of the COW stores. */
int dmr_parse_chunk_size(const char *arg, sector_t *chunk_sectors,
			 char **error);
sector_t dmr_store_capacity(sector_t dev_sectors, sector_t chunk_sectors);

/* dm-replication-commit.c: merge-down commit (failover). */
int dmr_commit_start(struct dmr_secondary *s);

#endif /* DM_REPLICATION_H */
