/* SPDX-License-Identifier: MIT */
/*
 * store_rec: event payload codec, record headers (CRC-32C, LSN, type,
 * length), AES-256-GCM sealing and segment headers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store_pvt.h"

#define BUF_BYTES (STORE_REC_HDR + STORE_EVENT_MAX + STORE_TAG_LEN + 64)

static struct store_str str_of(const char *s)
{
	return (struct store_str){s, (uint32_t)strlen(s)};
}

static void assert_str_eq(struct store_str a, struct store_str b)
{
	assert_int_equal(a.len, b.len);
	if (a.len)
		assert_memory_equal(a.ptr, b.ptr, a.len);
}

static void assert_event_eq(const struct store_event *a, const struct store_event *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->gw, b->gw);
	assert_int_equal(a->ts_ms, b->ts_ms);
	assert_int_equal(a->session_id, b->session_id);
	assert_int_equal(a->msg_id, b->msg_id);
	assert_int_equal(a->ref, b->ref);
	assert_int_equal(a->code, b->code);
	assert_int_equal(a->value, b->value);
	assert_str_eq(a->customer, b->customer);
	assert_str_eq(a->skill, b->skill);
	assert_str_eq(a->agent, b->agent);
	assert_str_eq(a->text, b->text);
	assert_str_eq(a->extra, b->extra);
}

/* Encode ev as record lsn at rec; returns its span. */
static size_t make_rec(uint8_t *rec, const struct store_event *ev, uint64_t lsn)
{
	size_t n = store_event_encode(ev, rec + STORE_REC_HDR);

	assert_true(n > 0);
	store_rec_finish(rec, ev->type, 0, lsn, (uint32_t)n);
	return store_rec_span((uint32_t)n);
}

static void test_crc32c_vector(void **state)
{
	(void)state;
	assert_int_equal(store_crc32c(0, "123456789", 9), 0xe3069283u);
	/* chainable */
	assert_int_equal(store_crc32c(store_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

static void test_event_roundtrip(void **state)
{
	uint8_t *buf = malloc(STORE_EVENT_MAX);
	char *big = malloc(STORE_STR_MAX);
	struct store_event ev, out;

	(void)state;
	assert_non_null(buf);
	assert_non_null(big);
	for (uint32_t i = 0; i < STORE_STR_MAX; i++)
		big[i] = (char)('a' + i % 26);
	for (uint16_t t = STORE_REC_OPENED; t < STORE_REC_MAX; t++) {
		/* empty strings, extreme numbers */
		memset(&ev, 0, sizeof(ev));
		ev.type = t;
		ev.flags = 0xffff;
		ev.gw = UINT32_MAX;
		ev.ts_ms = UINT64_MAX;
		ev.session_id = 1;
		ev.msg_id = UINT64_MAX - 1;
		ev.ref = 42;
		ev.code = 7;
		ev.value = UINT32_MAX;
		assert_int_equal(store_event_size(&ev), 60);
		assert_int_equal(store_event_encode(&ev, buf), 60);
		assert_int_equal(store_event_decode(buf, 60, t, &out), 0);
		assert_event_eq(&ev, &out);

		/* one string at its maximum, the whole event at its maximum */
		ev.customer = (struct store_str){big, STORE_STR_MAX};
		ev.text = (struct store_str){big, STORE_EVENT_MAX - 60 - STORE_STR_MAX - 3};
		ev.skill = str_of("会");
		assert_int_equal(store_event_size(&ev), STORE_EVENT_MAX);
		assert_int_equal(store_event_encode(&ev, buf), STORE_EVENT_MAX);
		assert_int_equal(store_event_decode(buf, STORE_EVENT_MAX, t, &out), 0);
		assert_event_eq(&ev, &out);

		/* every string present */
		ev = (struct store_event){.type = t,
		                          .session_id = 9,
		                          .customer = str_of("c"),
		                          .skill = str_of("sk"),
		                          .agent = str_of("agt"),
		                          .text = str_of("text!"),
		                          .extra = str_of("extra--")};
		size_t n = store_event_encode(&ev, buf);

		assert_int_equal(n, 60 + 1 + 2 + 3 + 5 + 7);
		assert_int_equal(store_event_decode(buf, n, t, &out), 0);
		assert_event_eq(&ev, &out);
		/* a wrong length on either side is refused */
		assert_int_equal(store_event_decode(buf, n - 1, t, &out), -EBADMSG);
		assert_int_equal(store_event_decode(buf, n, 0, &out), -EBADMSG);
		assert_int_equal(store_event_decode(buf, n, STORE_REC_MAX, &out), -EBADMSG);
	}
	/* over the limits */
	memset(&ev, 0, sizeof(ev));
	ev.type = STORE_REC_MSG_IN;
	ev.text = (struct store_str){big, STORE_STR_MAX + 1};
	assert_int_equal(store_event_encode(&ev, buf), 0);
	ev.text = (struct store_str){big, STORE_STR_MAX};
	ev.extra = (struct store_str){big, STORE_STR_MAX};
	assert_int_equal(store_event_encode(&ev, buf), 0); /* 60 + 32768 > STORE_EVENT_MAX */
	ev.extra.len = 0;
	ev.type = 0;
	assert_int_equal(store_event_encode(&ev, buf), 0);
	assert_int_equal(store_event_decode(buf, 59, STORE_REC_MSG_IN, &out), -EBADMSG);
	free(big);
	free(buf);
}

static void test_rec_valid(void **state)
{
	uint8_t buf[512];
	struct store_event ev = {.type = STORE_REC_MSG_IN, .session_id = 5, .text = str_of("hi")};
	struct store_rec_hdr h;
	size_t span;

	(void)state;
	memset(buf, 0xee, sizeof(buf));
	span = make_rec(buf, &ev, 77);
	assert_int_equal(span % STORE_REC_ALIGN, 0);
	assert_int_equal(store_rec_check(buf, span, 77, &h), 0);
	assert_int_equal(h.lsn, 77);
	assert_int_equal(h.type, STORE_REC_MSG_IN);
	assert_int_equal(h.len, 62);
	assert_int_equal(store_rec_check(buf, span, 0, &h), 0); /* any LSN */
	assert_int_equal(store_rec_check(buf, span, 78, &h), -EBADMSG);
	/* padding zeroed */
	for (size_t i = STORE_REC_HDR + 62; i < span; i++)
		assert_int_equal(buf[i], 0);
}

static void test_rec_zero_and_truncated(void **state)
{
	uint8_t buf[512] = {0};
	struct store_event ev = {
	        .type = STORE_REC_MSG_OUT, .session_id = 5, .text = str_of("hello")};
	struct store_rec_hdr h;
	size_t span;

	(void)state;
	assert_int_equal(store_rec_check(buf, sizeof(buf), 1, &h), -ENODATA);
	assert_int_equal(store_rec_check(buf, 0, 1, &h), -ENODATA);
	/* a zero remainder shorter than a header ends a segment cleanly */
	assert_int_equal(store_rec_check(buf, 16, 1, &h), -ENODATA);
	span = make_rec(buf, &ev, 1);
	for (size_t cut = 1; cut < span; cut++)
		assert_int_equal(store_rec_check(buf, cut, 1, &h), -EBADMSG);
	assert_int_equal(store_rec_check(buf, span, 1, &h), 0);
}

/* Every single-bit flip in the header or payload of a record is caught. */
static void test_rec_bit_flips(void **state)
{
	static const char *texts[] = {"", "x", "a longer text of a customer message, 人工客服"};
	uint8_t buf[512];
	struct store_rec_hdr h;

	(void)state;
	for (unsigned k = 0; k < 3; k++) {
		struct store_event ev = {.type = (uint16_t)(STORE_REC_OPENED + k * 4),
		                         .session_id = 1000 + k,
		                         .ts_ms = 1700000000000ull,
		                         .customer = str_of("cust"),
		                         .text = str_of(texts[k])};
		uint64_t lsn = 12345 + k;
		size_t span;
		uint32_t covered;

		memset(buf, 0, sizeof(buf));
		span = make_rec(buf, &ev, lsn);
		covered = STORE_REC_HDR + (uint32_t)store_event_size(&ev);
		for (uint32_t bit = 0; bit < covered * 8; bit++) {
			buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			assert_int_not_equal(store_rec_check(buf, span, lsn, &h), 0);
			buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		assert_int_equal(store_rec_check(buf, span, lsn, &h), 0);
	}
}

static void test_aead(void **state)
{
	uint8_t key[32], key2[32], p[128], orig[64];
	struct store_aead *a, *b;

	(void)state;
	for (int i = 0; i < 32; i++) {
		key[i] = (uint8_t)i;
		key2[i] = (uint8_t)(i + 1);
	}
	for (int i = 0; i < 64; i++)
		orig[i] = (uint8_t)(i * 7);
	a = store_aead_create(key);
	b = store_aead_create(key2);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(store_aead_create(NULL));

	memcpy(p, orig, 64);
	assert_int_equal(store_aead_seal(a, 0xabcd, 9, STORE_REC_MSG_IN, p, 64), 0);
	assert_memory_not_equal(p, orig, 64);
	assert_int_equal(store_aead_open(a, 0xabcd, 9, STORE_REC_MSG_IN, p, 64 + STORE_TAG_LEN), 0);
	assert_memory_equal(p, orig, 64);

	/* wrong key, tampered byte, wrong LSN, type or nonce prefix */
	for (int c = 0; c < 6; c++) {
		uint8_t q[128];
		int rc;

		memcpy(q, orig, 64);
		assert_int_equal(store_aead_seal(a, 0xabcd, 9, STORE_REC_MSG_IN, q, 64), 0);
		switch (c) {
		case 0:
			rc = store_aead_open(b, 0xabcd, 9, STORE_REC_MSG_IN, q, 64 + STORE_TAG_LEN);
			break;
		case 1:
			q[10] ^= 1;
			rc = store_aead_open(a, 0xabcd, 9, STORE_REC_MSG_IN, q, 64 + STORE_TAG_LEN);
			break;
		case 2:
			q[64 + 3] ^= 0x80; /* the tag */
			rc = store_aead_open(a, 0xabcd, 9, STORE_REC_MSG_IN, q, 64 + STORE_TAG_LEN);
			break;
		case 3:
			rc = store_aead_open(a, 0xabcd, 10, STORE_REC_MSG_IN, q,
			                     64 + STORE_TAG_LEN);
			break;
		case 4:
			rc = store_aead_open(a, 0xabcd, 9, STORE_REC_MSG_OUT, q,
			                     64 + STORE_TAG_LEN);
			break;
		default:
			rc = store_aead_open(a, 0xabce, 9, STORE_REC_MSG_IN, q, 64 + STORE_TAG_LEN);
			break;
		}
		assert_int_equal(rc, -EBADMSG);
	}
	assert_int_equal(store_aead_open(a, 0, 1, STORE_REC_MSG_IN, p, STORE_TAG_LEN - 1),
	                 -EBADMSG);
	/* empty plaintext still authenticated */
	assert_int_equal(store_aead_seal(a, 1, 2, STORE_REC_NOTES, p, 0), 0);
	assert_int_equal(store_aead_open(a, 1, 2, STORE_REC_NOTES, p, STORE_TAG_LEN), 0);
	assert_int_equal(store_aead_open(a, 1, 3, STORE_REC_NOTES, p, STORE_TAG_LEN), -EBADMSG);
	store_aead_destroy(a);
	store_aead_destroy(b);
	store_aead_destroy(NULL);
}

static void test_seg_hdr(void **state)
{
	uint8_t *block = malloc(STORE_SEG_HDR);
	struct store_seg_hdr h = {.version = STORE_SEG_VERSION,
	                          .hdr_bytes = STORE_SEG_HDR,
	                          .segment_bytes = 64ull << 20,
	                          .first_lsn = 123456789,
	                          .created_ms = 1700000000123ull,
	                          .nonce_prefix = 0xdeadbeef,
	                          .flags = STORE_SF_SEALED | STORE_SF_CKPT},
	                     out;
	char name[32];

	(void)state;
	assert_non_null(block);
	memcpy(h.magic, STORE_SEG_MAGIC, 8);
	store_seg_hdr_encode(&h, block);
	assert_int_equal(store_seg_hdr_decode(block, &out), 0);
	assert_memory_equal(out.magic, STORE_SEG_MAGIC, 8);
	assert_int_equal(out.version, h.version);
	assert_int_equal(out.hdr_bytes, h.hdr_bytes);
	assert_int_equal(out.segment_bytes, h.segment_bytes);
	assert_int_equal(out.first_lsn, h.first_lsn);
	assert_int_equal(out.created_ms, h.created_ms);
	assert_int_equal(out.nonce_prefix, h.nonce_prefix);
	assert_int_equal(out.flags, h.flags);
	for (size_t i = 64; i < STORE_SEG_HDR; i++)
		assert_int_equal(block[i], 0);
	/* any flipped bit of the used part */
	for (uint32_t bit = 0; bit < 64 * 8; bit++) {
		block[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(store_seg_hdr_decode(block, &out), -EBADMSG);
		block[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	/* well-formed CRC, impossible contents */
	h.version = 2;
	store_seg_hdr_encode(&h, block);
	assert_int_equal(store_seg_hdr_decode(block, &out), -EBADMSG);
	h.version = STORE_SEG_VERSION;
	h.first_lsn = 0;
	store_seg_hdr_encode(&h, block);
	assert_int_equal(store_seg_hdr_decode(block, &out), -EBADMSG);
	h.first_lsn = 1;
	h.segment_bytes = 4096 * 3 + 1;
	store_seg_hdr_encode(&h, block);
	assert_int_equal(store_seg_hdr_decode(block, &out), -EBADMSG);
	memset(block, 0, STORE_SEG_HDR);
	assert_int_equal(store_seg_hdr_decode(block, &out), -EBADMSG);

	store_seg_name(42, name);
	assert_string_equal(name, "00000000000000000042.seg");
	free(block);
}

/* A sealed record goes through the whole path: seal, finish, check, open, decode. */
static void test_sealed_record(void **state)
{
	uint8_t key[32] = {9}, buf[BUF_BYTES];
	struct store_aead *a = store_aead_create(key);
	struct store_event ev = {.type = STORE_REC_MSG_OUT,
	                         .session_id = 3,
	                         .agent = str_of("agent-7"),
	                         .text = str_of("secret text")},
	                   out;
	struct store_rec_hdr h;
	size_t n;

	(void)state;
	assert_non_null(a);
	n = store_event_encode(&ev, buf + STORE_REC_HDR);
	assert_int_equal(store_aead_seal(a, 77, 5, ev.type, buf + STORE_REC_HDR, (uint32_t)n), 0);
	store_rec_finish(buf, ev.type, STORE_RF_SEALED, 5, (uint32_t)(n + STORE_TAG_LEN));
	assert_null(memmem(buf, n + STORE_REC_HDR, "secret", 6));
	assert_int_equal(store_rec_check(buf, sizeof(buf), 5, &h), 0);
	assert_int_equal(h.flags, STORE_RF_SEALED);
	assert_int_equal(store_aead_open(a, 77, 5, h.type, buf + STORE_REC_HDR, h.len), 0);
	assert_int_equal(
	        store_event_decode(buf + STORE_REC_HDR, h.len - STORE_TAG_LEN, h.type, &out), 0);
	assert_event_eq(&ev, &out);
	/* an unknown header flag is refused */
	store_rec_finish(buf, ev.type, 0x4, 5, (uint32_t)(n + STORE_TAG_LEN));
	assert_int_equal(store_rec_check(buf, sizeof(buf), 5, &h), -EBADMSG);
	store_aead_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_crc32c_vector), cmocka_unit_test(test_event_roundtrip),
	        cmocka_unit_test(test_rec_valid),     cmocka_unit_test(test_rec_zero_and_truncated),
	        cmocka_unit_test(test_rec_bit_flips), cmocka_unit_test(test_aead),
	        cmocka_unit_test(test_seg_hdr),       cmocka_unit_test(test_sealed_record),
	};

	return cmocka_run_group_tests_name("store_rec", tests, NULL, NULL);
}
