/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 validation and code point counting in one pass (RFC 3629, table 3-7
 * of the Unicode standard). Runs of ASCII, the common case, are taken eight
 * bytes at a time.
 */
#include <string.h>

#include "dispatch_pvt.h"

int64_t disp_utf8_count(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	int64_t n = 0;

	while (i < len) {
		unsigned char c = s[i];

		if (c < 0x80) {
			uint64_t w;

			while (i + 8 <= len) {
				memcpy(&w, s + i, sizeof(w));
				if (w & 0x8080808080808080ull)
					break;
				i += 8;
				n += 8;
			}
			while (i < len && s[i] < 0x80) {
				i++;
				n++;
			}
			continue;
		}
		if (c < 0xc2) /* continuation byte, or overlong 2-byte lead */
			return -1;
		if (c < 0xe0) {
			if (i + 1 >= len || (s[i + 1] & 0xc0) != 0x80)
				return -1;
			i += 2;
		} else if (c < 0xf0) {
			unsigned char lo = 0x80, hi = 0xbf;

			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
			if (i + 2 >= len || s[i + 1] < lo || s[i + 1] > hi ||
			    (s[i + 2] & 0xc0) != 0x80)
				return -1;
			i += 3;
		} else if (c < 0xf5) {
			unsigned char lo = 0x80, hi = 0xbf;

			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
			if (i + 3 >= len || s[i + 1] < lo || s[i + 1] > hi ||
			    (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80)
				return -1;
			i += 4;
		} else {
			return -1;
		}
		n++;
	}
	return n;
}
