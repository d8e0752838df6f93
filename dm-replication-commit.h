/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: the failover's merge-down commit, dm-replication-commit.c.
 *
 * On failover a workqueue copies both stores into the secondary device while
 * the top keeps serving I/O, with its progress (the cursor) durable in
 * hidden's header.  The data path asks it where a top write goes meanwhile;
 * the target starts, pauses, resumes and tunes it.
 */
#ifndef DM_REPLICATION_COMMIT_H
#define DM_REPLICATION_COMMIT_H

#include <linux/types.h>

struct bio;
struct dmr_core;

/* Where a top bio goes while the session is failing over (or failed to). */
enum dmr_route {
	DMR_ROUTE_SECONDARY,	/* the chunk is in no store, or merged durably */
	DMR_ROUTE_ACTIVE,	/* active's slot */
	DMR_ROUTE_HIDDEN,	/* hidden's slot, written in place */
	DMR_ROUTE_COPY_UP,	/* a new active slot, copied up from hidden */
	DMR_ROUTE_WAIT,		/* until the cursor covering the chunk is durable */
	DMR_ROUTE_FAIL,		/* EIO: it would wait, and the session failed */
};

/*
 * Sets up the commit of a session just loaded, paused; in state failover or
 * failover_failed it plans the merge from the durable cursor.  Return: 0 or
 * a negative errno.  Sleeps.
 */
int dmr_commit_init(struct dmr_core *core);
/* Stops the commit, its progress durable, and frees it.  Sleeps. */
void dmr_commit_exit(struct dmr_core *core);
/*
 * Begins (or retries) the commit; the caller holds the core's state_lock.
 * Return: 0 once state failover is durable, or a negative errno.  Sleeps.
 */
int dmr_commit_start(struct dmr_core *core);
/* Stops starting copies and makes the progress durable, for a suspend. */
void dmr_commit_pause(struct dmr_core *core);
/* Lets the commit run, for a resume. */
void dmr_commit_resume(struct dmr_core *core);
/* Sets how many extents are copied at once.  Return: 0 or -EINVAL. */
int dmr_commit_set_depth(struct dmr_core *core, unsigned int depth);
/* The chunks still to copy (not durably, once failed). */
u32 dmr_commit_remaining(struct dmr_core *core);
/* Chunks below the returned one are in the secondary device durably. */
u64 dmr_commit_durable(struct dmr_core *core);
/*
 * Routes a top write counted in flight while failing over; see the
 * definition for the pins it takes and the bios it queues.
 */
enum dmr_route dmr_commit_route_write(struct dmr_core *core, struct bio *bio,
				      u32 chunk, bool in_active,
				      bool in_hidden);
/*
 * Where a top read goes while failing over: below the @durable cursor the
 * secondary device, else active, hidden or the secondary device.  Pure.
 */
enum dmr_route dmr_route_read(u64 chunk, u64 durable, bool in_active,
			      bool in_hidden);
/* A bucket's last pin is gone: an extent waiting for it may copy now. */
void dmr_commit_writer_done(struct dmr_core *core);

#endif /* DM_REPLICATION_COMMIT_H */
