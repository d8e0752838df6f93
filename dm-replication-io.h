/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dm-replication: the data path of a secondary's top and port,
 * dm-replication-io.c.  The target's mode callbacks hand it their bios.
 */
#ifndef DM_REPLICATION_IO_H
#define DM_REPLICATION_IO_H

#include <linux/device-mapper.h>
#include <linux/sizes.h>

struct dmr_core;
struct dmr_core_args;
struct dmr_session;

/* The most a top bio over several chunks (a run) covers: 1 MiB. */
#define DMR_RUN_SECTORS		(SZ_1M >> SECTOR_SHIFT)

/*
 * Loads a session's stores, this layer and the failover's commit (paused).
 * Return: the core, or an ERR_PTR with @error set.  Sleeps.
 */
struct dmr_core *dmr_io_load(const struct dmr_core_args *a, char **error);
/* Unloads them again: nothing in flight, no port bio sees the core. */
void dmr_io_unload(struct dmr_core *core);

/* ti->per_io_data_size of the top and the port. */
size_t dmr_io_per_bio_data_size(void);
/* Maps a top bio.  Return: a DM_MAPIO_* value. */
int dmr_io_map_top(struct dmr_core *core, struct dm_target *ti,
		   struct bio *bio);
/* Maps a port bio; reads pass and writes fail without a loaded core. */
int dmr_io_map_port(struct dmr_session *ses, struct dm_target *ti,
		    struct bio *bio, struct block_device *secondary);
/* The end of a top or port bio.  Return: a DM_ENDIO_* value. */
int dmr_io_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error);

#endif /* DM_REPLICATION_IO_H */
