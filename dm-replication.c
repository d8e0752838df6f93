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
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-replication.h"

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
};

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
};

/**
 * dmr_parse_message() - parse a message to a secondary device
 * @argc: number of words in the message, at least one
 * @argv: the words
 * @msg: set to the message on success
 * @error: set to a message for the kernel log on failure
 *
 * Return: 0 on success, -EINVAL with @error set otherwise.
 */
int dmr_parse_message(unsigned int argc, char **argv, enum dmr_msg *msg,
		      char **error)
{
	unsigned int i;

	if (!argc) {
		*error = "Empty message";
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(dmr_msg_names); i++) {
		if (strcmp(argv[0], dmr_msg_names[i]))
			continue;
		if (argc > 1) {
			*error = "Message takes no arguments";
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
 * session; a reload of that device's table joins the same session.
 */
static int dmr_session_attach_top(struct dm_target *ti, dev_t dev,
				  struct dmr_session **out)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
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
	if (!ses) {
		ses = kzalloc(sizeof(*ses), GFP_KERNEL);
		if (!ses) {
			ti->error = "Cannot allocate replication session";
			r = -ENOMEM;
			goto out;
		}
		ses->secondary_dev = dev;
		ses->state = DMR_STATE_RUNNING;
		list_add(&ses->list, &dmr_sessions);
	}
	ses->top_md = md;
	ses->nr_top++;
	*out = ses;
out:
	mutex_unlock(&dmr_sessions_lock);
	return r;
}

/* A port table joins the session of a loaded secondary over @dev. */
static int dmr_session_attach_port(struct dm_target *ti, dev_t dev,
				   struct dmr_session **out)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
	struct dmr_session *ses;
	int r = 0;

	mutex_lock(&dmr_sessions_lock);
	ses = dmr_session_find(dev);
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
	ses->port_md = md;
	ses->nr_port++;
	*out = ses;
out:
	mutex_unlock(&dmr_sessions_lock);
	return r;
}

static void dmr_session_detach_top(struct dmr_session *ses)
{
	mutex_lock(&dmr_sessions_lock);
	ses->nr_top--;
	dmr_session_put(ses);
	mutex_unlock(&dmr_sessions_lock);
}

static void dmr_session_detach_port(struct dmr_session *ses)
{
	mutex_lock(&dmr_sessions_lock);
	ses->nr_port--;
	dmr_session_put(ses);
	mutex_unlock(&dmr_sessions_lock);
}

static enum dmr_state dmr_session_state(struct dmr_session *ses)
{
	enum dmr_state state;

	mutex_lock(&dmr_sessions_lock);
	state = ses->state;
	mutex_unlock(&dmr_sessions_lock);
	return state;
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

/* Until the data path exists, every bio fails with EIO. */
static int dmr_map_unimplemented(struct dm_target *ti, struct bio *bio)
{
	return DM_MAPIO_KILL;
}

/* ---------------------------------------------------------------------------
 * Secondary mode.
 */

static struct dmr_secondary *to_secondary(struct dm_target *ti)
{
	return container_of(ti->private, struct dmr_secondary, base);
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

	r = dm_set_target_max_io_len(ti, s->chunk_sectors);
	if (r) {
		ti->error = "Cannot set the maximum I/O length to the chunk size";
		goto bad;
	}

	r = dmr_session_attach_top(ti, s->secondary->bdev->bd_dev, &s->session);
	if (r)
		goto bad;

	ti->num_flush_bios = 1;
	ti->private = &s->base;
	return 0;

bad:
	dmr_secondary_put_devs(ti, s);
	kfree(s);
	return r;
}

static void dmr_secondary_dtr(struct dm_target *ti)
{
	struct dmr_secondary *s = to_secondary(ti);

	dmr_session_detach_top(s->session);
	dmr_secondary_put_devs(ti, s);
	kfree(s);
}

static void dmr_secondary_status_info(struct dm_target *ti, char *result,
				      unsigned int maxlen)
{
	struct dmr_secondary *s = to_secondary(ti);
	sector_t active = dmr_store_capacity(dmr_dev_sectors(s->active),
					     s->chunk_sectors);
	sector_t hidden = dmr_store_capacity(dmr_dev_sectors(s->hidden),
					     s->chunk_sectors);
	unsigned int sz = 0;

	DMEMIT("secondary %s %d %u/%llu %u/%llu %u %u",
	       dmr_state_name(dmr_session_state(s->session)), 0,
	       0, (unsigned long long)active, 0, (unsigned long long)hidden,
	       0, 0);
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
	enum dmr_msg msg;
	char *error;
	int r;

	r = dmr_parse_message(argc, argv, &msg, &error);
	if (r) {
		DMERR("%s: %s: %s", name, error, argv[0]);
		return r;
	}

	switch (msg) {
	case DMR_MSG_FAILOVER:
		return dmr_commit_start(s);
	case DMR_MSG_CHECKPOINT:
	case DMR_MSG_STOP:
		break;
	}
	DMERR("%s: %s is not implemented yet", name, argv[0]);
	return -EOPNOTSUPP;
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

static const struct dmr_mode_ops dmr_secondary_ops = {
	.name = "secondary",
	.ctr = dmr_secondary_ctr,
	.dtr = dmr_secondary_dtr,
	.map = dmr_map_unimplemented,
	.status_info = dmr_secondary_status_info,
	.status_table = dmr_secondary_status_table,
	.message = dmr_secondary_message,
	.iterate_devices = dmr_secondary_iterate_devices,
};

/* ---------------------------------------------------------------------------
 * Primary mode.
 */

static struct dmr_primary *to_primary(struct dm_target *ti)
{
	return container_of(ti->private, struct dmr_primary, base);
}

static const struct dmr_mode_ops dmr_primary_ops;

static void dmr_primary_put_devs(struct dm_target *ti, struct dmr_primary *p)
{
	if (p->remote)
		dm_put_device(ti, p->remote);
	if (p->local)
		dm_put_device(ti, p->local);
}

static int dmr_primary_get_devs(struct dm_target *ti, struct dmr_primary *p,
				struct dm_arg_set *as)
{
	int r;

	r = dmr_get_dev(ti, as, &p->local, "Error opening local device");
	if (r)
		return r;
	r = dmr_get_dev(ti, as, &p->remote, "Error opening remote device");
	if (r)
		return r;
	if (dmr_same_dev(p->local, p->remote)) {
		ti->error = "Remote device must differ from the local device";
		return -EINVAL;
	}
	r = dmr_check_len(ti, p->local,
			  "Target length exceeds the local device");
	if (r)
		return r;
	return dmr_check_len(ti, p->remote,
			     "Target length exceeds the remote device");
}

static int dmr_primary_ctr(struct dm_target *ti, struct dm_arg_set *as)
{
	struct dmr_primary *p;
	int r;

	if (as->argc < 2) {
		ti->error = "Not enough arguments: need <local> <remote>";
		return -EINVAL;
	}

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p) {
		ti->error = "Cannot allocate primary context";
		return -ENOMEM;
	}
	p->base.ops = &dmr_primary_ops;
	p->ti = ti;

	r = dmr_primary_get_devs(ti, p, as);
	if (r)
		goto bad;
	r = dmr_parse_no_features(as, &ti->error);
	if (r)
		goto bad;

	ti->num_flush_bios = 1;
	ti->private = &p->base;
	return 0;

bad:
	dmr_primary_put_devs(ti, p);
	kfree(p);
	return r;
}

static void dmr_primary_dtr(struct dm_target *ti)
{
	struct dmr_primary *p = to_primary(ti);

	dmr_primary_put_devs(ti, p);
	kfree(p);
}

static void dmr_primary_status_info(struct dm_target *ti, char *result,
				    unsigned int maxlen)
{
	unsigned int sz = 0;

	DMEMIT("primary %d", 0);
}

static void dmr_primary_status_table(struct dm_target *ti, char *result,
				     unsigned int maxlen)
{
	struct dmr_primary *p = to_primary(ti);
	unsigned int sz = 0;

	DMEMIT("primary %s %s 0", p->local->name, p->remote->name);
}

static int dmr_no_message(struct dm_target *ti, unsigned int argc,
			  char **argv)
{
	DMERR("%s: %s mode accepts no messages: %s",
	      dm_table_device_name(ti->table), dmr_ops(ti)->name, argv[0]);
	return -EINVAL;
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

static const struct dmr_mode_ops dmr_primary_ops = {
	.name = "primary",
	.ctr = dmr_primary_ctr,
	.dtr = dmr_primary_dtr,
	.map = dmr_map_unimplemented,
	.status_info = dmr_primary_status_info,
	.status_table = dmr_primary_status_table,
	.message = dmr_no_message,
	.iterate_devices = dmr_primary_iterate_devices,
};

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
	r = dmr_session_attach_port(ti, p->secondary->bdev->bd_dev,
				    &p->session);
	if (r)
		goto bad;

	ti->num_flush_bios = 1;
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

static void dmr_port_status_info(struct dm_target *ti, char *result,
				 unsigned int maxlen)
{
	struct dmr_port *p = to_port(ti);
	unsigned int sz = 0;

	DMEMIT("port %s %u", dmr_state_name(dmr_session_state(p->session)), 0);
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
	.map = dmr_map_unimplemented,
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

static struct target_type replication_target = {
	.name = "replication",
	.version = { 0, 1, 0 },
	.module = THIS_MODULE,
	.ctr = replication_ctr,
	.dtr = replication_dtr,
	.map = replication_map,
	.status = replication_status,
	.message = replication_message,
	.iterate_devices = replication_iterate_devices,
};

static int __init dm_replication_init(void)
{
	int r;

	r = dm_register_target(&replication_target);
	if (r)
		DMERR("target registration failed: %d", r);
	return r;
}

static void __exit dm_replication_exit(void)
{
	dm_unregister_target(&replication_target);
}

module_init(dm_replication_init);
module_exit(dm_replication_exit);

MODULE_DESCRIPTION(DM_NAME " COLO-style block replication target");
MODULE_LICENSE("GPL");
