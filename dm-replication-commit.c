// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: the merge-down commit that a failover runs.
 *
 * On failover a workqueue copies every chunk of active, and every chunk of
 * hidden that is not in active, into the secondary device while the VM keeps
 * running on the top device.
 */
#include <linux/kernel.h>

#include "dm-replication.h"

/**
 * dmr_commit_start() - begin merging the COW stores into the secondary device
 * @core: the session's loaded state
 *
 * The merge-down commit is not implemented yet; the message is refused so
 * that an orchestrator cannot mistake it for a completed failover.
 *
 * Return: -EOPNOTSUPP.
 */
int dmr_commit_start(struct dmr_core *core)
{
	DMERR("failover is not implemented yet");
	return -EOPNOTSUPP;
}
