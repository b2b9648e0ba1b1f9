/* SPDX-License-Identifier: MIT */
/*
 * Shared by the fuzz targets' FUZZ_REPLAY_MAIN builds: a seeded generator,
 * and feeding a file, or every file of a directory tree, to
 * LLVMFuzzerTestOneInput.
 */
#ifndef SURGE_FUZZ_REPLAY_H
#define SURGE_FUZZ_REPLAY_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* splitmix64: the replays' seeded generator (seed it by setting rng_state) */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t rng_below(size_t n)
{
	return n ? (size_t)(rng_next() % n) : 0;
}

/* Returns 0, or -1 when a path cannot be read (said on stderr). */
static int replay_path(const char *path)
{
	struct stat st;
	FILE *f;
	uint8_t *buf;
	size_t n;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "replay: cannot stat %s\n", path);
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *de;
		char child[4096];
		int rc = 0;

		if (!d)
			return -1;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
			rc |= replay_path(child);
		}
		closedir(d);
		return rc;
	}
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: cannot open %s\n", path);
		return -1;
	}
	/* exactly the file's size, so ASan sees any read past the end */
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

#endif /* SURGE_FUZZ_REPLAY_H */
