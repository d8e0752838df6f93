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
 * This file is the target's glue: the target type, the dispatch to a mode's
 * callbacks, the argument tables, and each mode's constructor, destructor,
 * status and messages.  The secondary's and the port's bios go to the data
 * path (dm-replication-io.c); the failover's commit, the sessions and the
 * stores live below it (dm-replication-commit.c, -core.c, -cow.c).
 */
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-replication.h"
#include "dm-replication-commit.h"
#include "dm-replication-core.h"
#include "dm-replication-cow.h"
#include "dm-replication-io.h"
#include "dm-replication-test.h"

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

/**
 * dmr_parse_chunk_size() - parse a table's <chunk size> argument
 * @arg: the argument, a decimal count of 512-byte sectors
 * @chunk_sectors: set to the chunk size on success
 * @error: set to a message for ti->error on failure
 *
 * A chunk size is a power of two from %DMR_MIN_CHUNK_SECTORS (4 KiB) to
 * %DMR_MAX_CHUNK_SECTORS (1 MiB).  Its three errors are told apart, so it
 * has no struct dm_arg: dm_read_arg() has one message for all.
 *
 * Return: 0 on success, -EINVAL with @error set otherwise.
 */
int dmr_parse_chunk_size(const char *arg, sector_t *chunk_sectors,
			 char **error)
{
	unsigned int v;

	if (kstrtouint(arg, 10, &v)) {
		*error = "Invalid chunk size: not a number";
		return -EINVAL;
	}
	if (!is_power_of_2(v)) {
		*error = "Invalid chunk size: not a power of two";
		return -EINVAL;
	}
	if (v < DMR_MIN_CHUNK_SECTORS || v > DMR_MAX_CHUNK_SECTORS) {
		*error = "Invalid chunk size: must be 8 to 2048 sectors";
		return -EINVAL;
	}

	*chunk_sectors = v;
	return 0;
}

/*
 * The numbers tables and messages take, with their errors (dm-flakey's way).
 * They are read with dmr_read_uint(), not dm_read_arg(): its sscanf() takes
 * 4294967297 for 1.
 */
static const struct dm_arg dmr_low_water_mark_arg = {
	.min = 0,
	.max = UINT_MAX,
	.error = "Invalid low_water_mark: not a number",
};

static const struct dm_arg dmr_port_copy_chunks_arg = {
	.min = 1,
	.max = DMR_PORT_COPY_CHUNKS_MAX,
	.error = "Invalid port_copy_chunks: expected a power of two from 1 to 256",
};

static const struct dm_arg dmr_commit_depth_arg = {
	.min = 1,
	.max = DMR_COMMIT_DEPTH_MAX,
	.error = "Invalid commit_depth: expected 1 to 64 extents",
};

/* Reads a number within @arg's range, or sets @arg's error. */
static int dmr_read_uint(const struct dm_arg *arg, const char *s,
			 unsigned int *value, char **error)
{
	if (!s || kstrtouint(s, 10, value) || *value < arg->min ||
	    *value > arg->max) {
		*error = arg->error;
		return -EINVAL;
	}
	return 0;
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

/*
 * Reads the value of a feature whose name was just shifted: @missing is the
 * error when no value follows, and @seen says whether it came before.
 */
static int dmr_read_feature(struct dm_arg_set *as, unsigned int *argc,
			    const struct dm_arg *arg, char *missing,
			    bool *seen, unsigned int *value, char **error)
{
	if (*seen) {
		*error = "Duplicate feature argument";
		return -EINVAL;
	}
	if (!*argc) {
		*error = missing;
		return -EINVAL;
	}
	(*argc)--;
	*seen = true;
	return dmr_read_uint(arg, dm_shift_arg(as), value, error);
}

/**
 * dmr_parse_secondary_features() - parse a secondary table's feature arguments
 * @as: the arguments after <chunk size>: [<#feature args> [<feature arg>]*]
 * @f: filled with the features on success
 * @error: set to a message for ti->error on failure
 *
 * The features are "low_water_mark <#free chunks>" and "port_copy_chunks
 * <#chunks>", each at most once, so the group holds four words at most.
 * Unknown, repeated or incomplete features and trailing arguments are
 * errors.
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
	r = dmr_read_feature_group(as, 4, &argc, error);
	if (r)
		return r;

	while (argc) {
		name = dm_shift_arg(as);
		argc--;
		if (!strcmp(name, "low_water_mark")) {
			r = dmr_read_feature(as, &argc, &dmr_low_water_mark_arg,
					     "Feature low_water_mark needs a value",
					     &f->has_low_water_mark,
					     &f->low_water_mark, error);
		} else if (!strcmp(name, "port_copy_chunks")) {
			r = dmr_read_feature(as, &argc, &dmr_port_copy_chunks_arg,
					     "Feature port_copy_chunks needs a value",
					     &f->has_port_copy_chunks,
					     &f->port_copy_chunks, error);
			if (!r && !is_power_of_2(f->port_copy_chunks)) {
				*error = dmr_port_copy_chunks_arg.error;
				r = -EINVAL;
			}
		} else {
			*error = "Unrecognised feature argument";
			r = -EINVAL;
		}
		if (r)
			return r;
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
		    dmr_read_uint(&dmr_commit_depth_arg, argv[1], value, error))
			return -EINVAL;
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

static struct dmr_secondary *to_secondary(struct dm_target *ti)
{
	return container_of(ti->private, struct dmr_secondary, base);
}

/* The loaded state, while this table may do I/O (after its preresume). */
static struct dmr_core *dmr_secondary_core(struct dmr_secondary *s)
{
	return dmr_session_core(s->session);
}

/* What the session's stores are loaded from. */
static void dmr_secondary_args(struct dmr_secondary *s,
			       struct dmr_core_args *a)
{
	a->secondary = s->secondary->bdev;
	a->hidden = s->hidden->bdev;
	a->active = s->active->bdev;
	a->len = s->ti->len;
	a->chunk_sectors = s->chunk_sectors;
	a->name = dm_table_device_name(s->ti->table);
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
	struct dmr_core_args a;
	enum dmr_state state;
	int r;

	if (dmr_session_core(s->session))
		return 0;
	dmr_secondary_args(s, &a);
	r = dmr_core_read_state(&a, &state, &ti->error);
	if (!r)
		dmr_session_set_disk_state(s->session, state);
	return r;
}

static int dmr_secondary_ctr(struct dm_target *ti, struct dm_arg_set *as)
{
	struct dmr_secondary *s;
	struct dmr_core_args a;
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

	dmr_secondary_args(s, &a);
	s->session = dmr_session_attach_top(dm_table_get_md(ti->table), &a,
					    &ti->error);
	if (IS_ERR(s->session)) {
		r = PTR_ERR(s->session);
		goto bad;
	}
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
	ti->per_io_data_size = dmr_io_per_bio_data_size();
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
		dmr_io_unload(last);
	dmr_secondary_put_devs(ti, s);
	kfree(s);
}

static int dmr_secondary_preresume(struct dm_target *ti)
{
	struct dmr_secondary *s = to_secondary(ti);
	struct dmr_session *ses = s->session;
	struct dmr_core *core = dmr_session_core(ses);
	struct dmr_core_args a;
	char *error;

	if (core && dmr_failed(core) && core->ti != ti) {
		/*
		 * A new table over a failed session: forget what the core
		 * held and load the stores anew, as the disk has them.
		 * Meanwhile the port sees no core: its writes fail.
		 */
		DMINFO("%s: reloading the stores of the failed session",
		       dm_table_device_name(ti->table));
		dmr_io_unload(dmr_session_withdraw(ses));
		core = NULL;
	}
	if (!core) {
		/*
		 * Only this device's table changes the session's core, and
		 * dm serialises its resumes: the stores are loaded without
		 * the registry's mutex.
		 */
		dmr_secondary_args(s, &a);
		core = dmr_io_load(&a, &error);
		if (IS_ERR(core)) {
			DMERR("%s: cannot load the stores: %s",
			      dm_table_device_name(ti->table), error);
			return PTR_ERR(core);
		}
		dmr_session_publish(ses, core, &a);
	}

	core->low_water_mark = s->features.has_low_water_mark ?
			       s->features.low_water_mark : 0;
	/* The port reads it without the table: it may be mapping meanwhile. */
	WRITE_ONCE(core->port_copy_chunks, s->features.has_port_copy_chunks ?
					   s->features.port_copy_chunks : 1);
	mutex_lock(&core->event_lock);
	core->ti = ti;
	mutex_unlock(&core->event_lock);
	dmr_commit_resume(core);
	return 0;
}

/*
 * Suspend and reload lose nothing: persist what completed.  A failover's
 * commit pauses until the next resume, with its progress durable.  When
 * suspend returns no write of ours is in flight, not even the header of
 * active that a checkpoint left to a worker (and its failure shows in status).
 */
static void dmr_secondary_postsuspend(struct dm_target *ti)
{
	struct dmr_core *core = dmr_secondary_core(to_secondary(ti));

	if (core) {
		dmr_wait_active_header(core);
		dmr_persist_active(core);
		dmr_commit_pause(core);
	}
}

static int dmr_secondary_map(struct dm_target *ti, struct bio *bio)
{
	struct dmr_core *core = dmr_secondary_core(to_secondary(ti));

	if (unlikely(!core))
		return DM_MAPIO_KILL;
	return dmr_io_map_top(core, ti, bio);
}

/* The state status shows: "failed" in the failed mode, whatever the disk's. */
static const char *dmr_status_state(struct dmr_core *core,
				    enum dmr_state state)
{
	return dmr_failed(core) ? "failed" : dmr_state_name(state);
}

/* The error status shows: the failed mode's, else the first since the checkpoint. */
static int dmr_status_error(struct dmr_core *core)
{
	int failed = READ_ONCE(core->failed);

	return failed ? -failed : atomic_read(&core->error);
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
		to_commit = dmr_store_nr_mapped(core->active) +
			    atomic_read(&core->hidden_only);
	else if (state == DMR_STATE_DONE)
		to_commit = 0;
	else
		to_commit = dmr_commit_remaining(core);
	DMEMIT("secondary %s %d %u/%llu %u/%llu %u %u",
	       dmr_status_state(core, state), dmr_status_error(core),
	       dmr_store_used(core->active),
	       (unsigned long long)dmr_store_layout(core->active)->nr_slots,
	       dmr_store_used(core->hidden),
	       (unsigned long long)dmr_store_layout(core->hidden)->nr_slots,
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
	DMEMIT(" %u", 2 * (s->features.has_low_water_mark +
			   s->features.has_port_copy_chunks));
	if (s->features.has_low_water_mark)
		DMEMIT(" low_water_mark %u", s->features.low_water_mark);
	if (s->features.has_port_copy_chunks)
		DMEMIT(" port_copy_chunks %u", s->features.port_copy_chunks);
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
	if (dmr_failed(core)) {
		DMERR("%s: %s: the session failed (error %d): reload the table",
		      name, argv[0], READ_ONCE(core->failed));
		return -EIO;
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
	.end_io = dmr_io_end_io,
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

/* A port target instance. */
struct dmr_port {
	struct dmr_target base;
	struct dm_target *ti;
	struct dm_dev *secondary;
	struct dmr_session *session;
};

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
	p->session = dmr_session_attach_port(dm_table_get_md(ti->table),
					     p->secondary->bdev->bd_dev,
					     &ti->error);
	if (IS_ERR(p->session)) {
		r = PTR_ERR(p->session);
		goto bad;
	}

	ti->num_flush_bios = 1;
	ti->per_io_data_size = dmr_io_per_bio_data_size();
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

static int dmr_port_map(struct dm_target *ti, struct bio *bio)
{
	struct dmr_port *p = to_port(ti);

	return dmr_io_map_port(p->session, ti, bio, p->secondary->bdev);
}

static void dmr_port_status_info(struct dm_target *ti, char *result,
				 unsigned int maxlen)
{
	struct dmr_port *p = to_port(ti);
	const char *name = "unloaded";
	enum dmr_state state;
	struct dmr_core *core;
	u32 copied = 0;
	unsigned int sz = 0;

	rcu_read_lock();
	core = dmr_session_core_rcu(p->session);
	if (core) {
		state = READ_ONCE(core->state);
		copied = dmr_store_used(core->hidden);
		name = dmr_status_state(core, state);
	}
	rcu_read_unlock();

	DMEMIT("port %s %u", name, copied);
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
	.end_io = dmr_io_end_io,
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

	r = dmr_store_module_init();
	if (r)
		return r;
	r = dmr_core_module_init();
	if (r)
		goto bad_core;
	r = dm_register_target(&replication_target);
	if (r) {
		DMERR("target registration failed: %d", r);
		goto bad_target;
	}
	return 0;

bad_target:
	dmr_core_module_exit();
bad_core:
	dmr_store_module_exit();
	return r;
}

static void __exit dm_replication_exit(void)
{
	dm_unregister_target(&replication_target);
	dmr_core_module_exit();
	dmr_store_module_exit();
}

module_init(dm_replication_init);
module_exit(dm_replication_exit);

MODULE_DESCRIPTION(DM_NAME " COLO-style block replication target");
MODULE_LICENSE("GPL");
