// SPDX-License-Identifier: GPL-2.0-only
/*
 * dm-replication: the COW stores (active and hidden).
 *
 * This file owns the stores' geometry: chunk sizes and how many chunks a
 * store device holds.  The on-disk format and the mappings live here too.
 */
#include <linux/kernel.h>
#include <linux/log2.h>

#include "dm-replication.h"

/**
 * dmr_parse_chunk_size() - parse a table's <chunk size> argument
 * @arg: the argument, a decimal count of 512-byte sectors
 * @chunk_sectors: set to the chunk size on success
 * @error: set to a message for ti->error on failure
 *
 * A chunk size is a power of two from %DMR_MIN_CHUNK_SECTORS (4 KiB) to
 * %DMR_MAX_CHUNK_SECTORS (1 MiB).
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

/**
 * dmr_store_capacity() - how many data chunks a COW store device holds
 * @dev_sectors: size of the store device in 512-byte sectors
 * @chunk_sectors: chunk size in sectors, a power of two
 *
 * The first chunk of a store is reserved for its header and metadata.
 *
 * Return: the number of chunks available for data, 0 if none.
 */
sector_t dmr_store_capacity(sector_t dev_sectors, sector_t chunk_sectors)
{
	sector_t chunks = dev_sectors >> ilog2(chunk_sectors);

	return chunks ? chunks - 1 : 0;
}
