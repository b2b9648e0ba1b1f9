/* SPDX-License-Identifier: MIT */
/*
 * The on-disk formats: record headers with CRC-32C, event payloads, segment
 * headers, and AES-256-GCM sealing of payloads.
 *
 * Event payload layout (little-endian):
 *   u64 ts_ms, session_id, msg_id, ref
 *   u32 gw, code, value
 *   u16 flags, u16 reserved (0)
 *   u16 length of customer, skill, agent, text, extra; u16 reserved (0)
 *   the five strings' bytes, in that order
 * 60 bytes of fixed part; the lengths must add up to exactly the rest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <rte_hash_crc.h>

#include "store_pvt.h"

#define EV_FIXED 60u
#define NB_STRS  5u

uint32_t store_crc32c(uint32_t crc, const void *p, size_t n)
{
	/* rte_hash_crc is the raw CRC-32C register; pre/post inversion makes it
	 * the standard one (crc32c("123456789") = 0xe3069283), chainable. */
	const uint8_t *b = p;
	uint32_t reg = ~crc;

	/* rte_hash_crc loads through uint64_t pointers: start it aligned, since a
	 * misaligned load is undefined (and fatal under -fsanitize=undefined). */
	while (n && ((uintptr_t)b & 7u)) {
		reg = rte_hash_crc_1byte(*b++, reg);
		n--;
	}
	while (n > (1u << 30)) {
		reg = rte_hash_crc(b, 1u << 30, reg);
		b += 1u << 30;
		n -= 1u << 30;
	}
	return ~rte_hash_crc(b, (uint32_t)n, reg);
}

static void ev_strs(const struct store_event *ev, const struct store_str *s[NB_STRS])
{
	s[0] = &ev->customer;
	s[1] = &ev->skill;
	s[2] = &ev->agent;
	s[3] = &ev->text;
	s[4] = &ev->extra;
}

size_t store_event_size(const struct store_event *ev)
{
	const struct store_str *s[NB_STRS];
	size_t n = EV_FIXED;

	ev_strs(ev, s);
	for (unsigned i = 0; i < NB_STRS; i++)
		n += s[i]->len;
	return n;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
	return p + 8;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
	return p + 4;
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
	return p + 2;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

size_t store_event_encode(const struct store_event *ev, uint8_t *out)
{
	const struct store_str *s[NB_STRS];
	size_t total = store_event_size(ev);
	uint8_t *p = out;

	if (ev->type == STORE_REC_NONE || ev->type >= STORE_REC_MAX || total > STORE_EVENT_MAX)
		return 0;
	ev_strs(ev, s);
	for (unsigned i = 0; i < NB_STRS; i++)
		if (s[i]->len > STORE_STR_MAX || (s[i]->len && !s[i]->ptr))
			return 0;
	p = put64(p, ev->ts_ms);
	p = put64(p, ev->session_id);
	p = put64(p, ev->msg_id);
	p = put64(p, ev->ref);
	p = put32(p, ev->gw);
	p = put32(p, ev->code);
	p = put32(p, ev->value);
	p = put16(p, ev->flags);
	p = put16(p, 0);
	for (unsigned i = 0; i < NB_STRS; i++)
		p = put16(p, (uint16_t)s[i]->len);
	p = put16(p, 0);
	for (unsigned i = 0; i < NB_STRS; i++) {
		if (s[i]->len)
			memcpy(p, s[i]->ptr, s[i]->len);
		p += s[i]->len;
	}
	return total;
}

int store_event_decode(const uint8_t *p, size_t n, uint16_t type, struct store_event *ev)
{
	struct store_str *s[NB_STRS];
	size_t want = EV_FIXED;
	const uint8_t *str;

	if (type == STORE_REC_NONE || type >= STORE_REC_MAX || n < EV_FIXED || n > STORE_EVENT_MAX)
		return -EBADMSG;
	if (get16(p + 46) != 0 || get16(p + 58) != 0)
		return -EBADMSG;
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->ts_ms = get64(p);
	ev->session_id = get64(p + 8);
	ev->msg_id = get64(p + 16);
	ev->ref = get64(p + 24);
	ev->gw = get32(p + 32);
	ev->code = get32(p + 36);
	ev->value = get32(p + 40);
	ev->flags = get16(p + 44);
	s[0] = &ev->customer;
	s[1] = &ev->skill;
	s[2] = &ev->agent;
	s[3] = &ev->text;
	s[4] = &ev->extra;
	for (unsigned i = 0; i < NB_STRS; i++) {
		s[i]->len = get16(p + 48 + 2 * i);
		if (s[i]->len > STORE_STR_MAX)
			return -EBADMSG;
		want += s[i]->len;
	}
	if (want != n)
		return -EBADMSG;
	str = p + EV_FIXED;
	for (unsigned i = 0; i < NB_STRS; i++) {
		s[i]->ptr = s[i]->len ? (const char *)str : NULL;
		str += s[i]->len;
	}
	return 0;
}

static void hdr_put(uint8_t *rec, const struct store_rec_hdr *h)
{
	uint8_t *p = rec;

	p = put32(p, h->len);
	p = put16(p, h->type);
	p = put16(p, h->flags);
	p = put64(p, h->lsn);
	p = put32(p, h->crc);
	put32(p, h->reserved);
}

static void hdr_get(const uint8_t *rec, struct store_rec_hdr *h)
{
	h->len = get32(rec);
	h->type = get16(rec + 4);
	h->flags = get16(rec + 6);
	h->lsn = get64(rec + 8);
	h->crc = get32(rec + 16);
	h->reserved = get32(rec + 20);
}

static uint32_t rec_crc(const uint8_t *rec, uint32_t len)
{
	static const uint8_t zero[4];
	uint32_t crc = store_crc32c(0, rec, 16);

	crc = store_crc32c(crc, zero, 4);
	crc = store_crc32c(crc, rec + 20, 4);
	return store_crc32c(crc, rec + STORE_REC_HDR, len);
}

void store_rec_finish(uint8_t *rec, uint16_t type, uint16_t flags, uint64_t lsn, uint32_t len)
{
	struct store_rec_hdr h = {.len = len, .type = type, .flags = flags, .lsn = lsn};
	size_t span = store_rec_span(len);

	hdr_put(rec, &h);
	memset(rec + STORE_REC_HDR + len, 0, span - STORE_REC_HDR - len);
	h.crc = rec_crc(rec, len);
	put32(rec + 16, h.crc);
}

int store_rec_check(const uint8_t *rec, size_t avail, uint64_t want_lsn, struct store_rec_hdr *hdr)
{
	static const uint8_t zero[STORE_REC_HDR];

	/* A segment's last record may end less than a header before the file does. */
	if (avail < STORE_REC_HDR)
		return avail == 0 || memcmp(rec, zero, avail) == 0 ? -ENODATA : -EBADMSG;
	if (memcmp(rec, zero, STORE_REC_HDR) == 0)
		return -ENODATA;
	hdr_get(rec, hdr);
	if (hdr->type == STORE_REC_NONE || hdr->type >= STORE_REC_MAX || hdr->reserved != 0 ||
	    (hdr->flags & ~STORE_RF_SEALED) != 0)
		return -EBADMSG;
	if (hdr->len > STORE_EVENT_MAX + STORE_TAG_LEN || store_rec_span(hdr->len) > avail)
		return -EBADMSG;
	if (want_lsn != 0 && hdr->lsn != want_lsn)
		return -EBADMSG;
	if (rec_crc(rec, hdr->len) != hdr->crc)
		return -EBADMSG;
	return 0;
}

/* ---- AES-256-GCM ------------------------------------------------------------ */

/*
 * One context per direction, keyed once: EVP_*Init_ex with a key runs the
 * AES key schedule, which per record would cost more than the sealing.
 */
struct store_aead {
	EVP_CIPHER_CTX *enc;
	EVP_CIPHER_CTX *dec;
};

struct store_aead *store_aead_create(const uint8_t key[32])
{
	struct store_aead *a;

	if (!key) {
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->enc = EVP_CIPHER_CTX_new();
	a->dec = EVP_CIPHER_CTX_new();
	if (!a->enc || !a->dec ||
	    EVP_EncryptInit_ex(a->enc, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
	    EVP_DecryptInit_ex(a->dec, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
		store_aead_destroy(a);
		errno = ENOMEM;
		return NULL;
	}
	return a;
}

void store_aead_destroy(struct store_aead *a)
{
	if (!a)
		return;
	EVP_CIPHER_CTX_free(a->enc);
	EVP_CIPHER_CTX_free(a->dec);
	free(a);
}

static void aead_nonce(uint32_t prefix, uint64_t lsn, uint8_t iv[12])
{
	memcpy(iv, &prefix, 4);
	memcpy(iv + 4, &lsn, 8);
}

static void aead_aad(uint64_t lsn, uint16_t type, uint8_t aad[10])
{
	memcpy(aad, &lsn, 8);
	memcpy(aad + 8, &type, 2);
}

int store_aead_seal(struct store_aead *a, uint32_t nonce_prefix, uint64_t lsn, uint16_t type,
                    uint8_t *p, uint32_t len)
{
	uint8_t iv[12], aad[10];
	int n = 0;

	aead_nonce(nonce_prefix, lsn, iv);
	aead_aad(lsn, type, aad);
	if (EVP_EncryptInit_ex(a->enc, NULL, NULL, NULL, iv) != 1 ||
	    EVP_EncryptUpdate(a->enc, NULL, &n, aad, sizeof(aad)) != 1 ||
	    EVP_EncryptUpdate(a->enc, p, &n, p, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(a->enc, p + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_GCM_GET_TAG, STORE_TAG_LEN, p + len) != 1)
		return -EIO;
	return 0;
}

int store_aead_open(struct store_aead *a, uint32_t nonce_prefix, uint64_t lsn, uint16_t type,
                    uint8_t *p, uint32_t len)
{
	uint8_t iv[12], aad[10];
	uint32_t clen;
	int n = 0;

	if (len < STORE_TAG_LEN)
		return -EBADMSG;
	clen = len - STORE_TAG_LEN;
	aead_nonce(nonce_prefix, lsn, iv);
	aead_aad(lsn, type, aad);
	if (EVP_DecryptInit_ex(a->dec, NULL, NULL, NULL, iv) != 1 ||
	    EVP_DecryptUpdate(a->dec, NULL, &n, aad, sizeof(aad)) != 1 ||
	    EVP_DecryptUpdate(a->dec, p, &n, p, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_GCM_SET_TAG, STORE_TAG_LEN, p + clen) != 1 ||
	    EVP_DecryptFinal_ex(a->dec, p + n, &n) != 1)
		return -EBADMSG;
	return 0;
}

/* ---- segment headers ------------------------------------------------------------ */

static void seg_put(uint8_t *b, const struct store_seg_hdr *h, uint32_t crc)
{
	uint8_t *p = b;

	/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): 8 bytes on disk, no NUL */
	memcpy(p, STORE_SEG_MAGIC, 8);
	p += 8;
	p = put32(p, h->version);
	p = put32(p, h->hdr_bytes);
	p = put64(p, h->segment_bytes);
	p = put64(p, h->first_lsn);
	p = put64(p, h->created_ms);
	p = put32(p, h->nonce_prefix);
	p = put32(p, h->flags);
	p = put32(p, crc);
	put32(p, 0);
}

#define SEG_HDR_USED 64u

void store_seg_hdr_encode(const struct store_seg_hdr *h, uint8_t *block)
{
	memset(block, 0, STORE_SEG_HDR);
	seg_put(block, h, 0);
	put32(block + 56, store_crc32c(0, block, SEG_HDR_USED));
}

int store_seg_hdr_decode(const uint8_t *block, struct store_seg_hdr *h)
{
	uint8_t copy[SEG_HDR_USED];
	uint32_t crc = get32(block + 56);

	memcpy(copy, block, SEG_HDR_USED);
	memset(copy + 56, 0, 4);
	if (memcmp(block, STORE_SEG_MAGIC, 8) != 0 || store_crc32c(0, copy, SEG_HDR_USED) != crc)
		return -EBADMSG;
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, block, 8);
	h->version = get32(block + 8);
	h->hdr_bytes = get32(block + 12);
	h->segment_bytes = get64(block + 16);
	h->first_lsn = get64(block + 24);
	h->created_ms = get64(block + 32);
	h->nonce_prefix = get32(block + 40);
	h->flags = get32(block + 44);
	h->crc = crc;
	h->reserved = get32(block + 60);
	if (h->version != STORE_SEG_VERSION || h->hdr_bytes != STORE_SEG_HDR || h->first_lsn == 0 ||
	    h->segment_bytes <= STORE_SEG_HDR || h->segment_bytes % STORE_SEG_HDR != 0 ||
	    h->reserved != 0)
		return -EBADMSG;
	return 0;
}

void store_seg_name(uint64_t first_lsn, char name[32])
{
	snprintf(name, 32, "%020llu.seg", (unsigned long long)first_lsn);
}

/* ---- held records ---------------------------------------------------------- */

int store_held_reserve(struct store_held *h, size_t need)
{
	size_t want = h->len + need, cap = h->cap;
	uint8_t *n;

	if (want <= cap)
		return 0;
	if (want > h->max)
		return -ENOMEM;
	while (cap < want)
		cap = cap ? 2 * cap : (1u << 20);
	if (cap > h->max)
		cap = h->max;
	n = realloc(h->buf, cap);
	if (!n)
		return -ENOMEM;
	h->buf = n;
	h->cap = cap;
	return 0;
}

void store_held_push(struct store_held *h, uint64_t lsn, uint16_t type, const uint8_t *payload,
                     uint32_t len)
{
	uint8_t *e = h->buf + h->len;
	uint16_t th[2] = {type, 0};

	memcpy(e, &lsn, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, th, 4);
	if (len)
		memcpy(e + 16, payload, len);
	h->len += store_held_span(len);
}

int store_held_drain(struct store_held *h, size_t keep, store_held_fn *fn, void *ctx)
{
	int ret = 0;

	for (size_t off = 0; off < h->len && !ret;) {
		const uint8_t *e = h->buf + off;
		uint64_t lsn;
		uint32_t len;
		uint16_t th[2];

		memcpy(&lsn, e, 8);
		memcpy(&len, e + 8, 4);
		memcpy(th, e + 12, 4);
		ret = fn(ctx, lsn, th[0], e + 16, len);
		off += store_held_span(len);
	}
	h->len = 0;
	if (h->cap > keep) {
		free(h->buf);
		h->buf = NULL;
		h->cap = 0;
	}
	return ret;
}
