/* data/pii.h: masking of personal data with typed tags, for shardlm prepare.
 *
 * defines: pii_type, pii_masker, pii_create, pii_destroy, pii_scratch,
 *          pii_scratch_create, pii_scratch_destroy, pii_mask, pii_type_name,
 *          pii_tag, pii_cn_id_valid, pii_luhn_valid
 *
 * What is masked (tag), in this order, each match validated beyond the
 * pattern:
 *   e-mail addresses                              <EMAIL>
 *   IPv6 (full, compressed, IPv4-mapped; inet_pton; at least two hex
 *     digits, one decimal, so ::1 and a::b stay)  <IPV6>
 *   IPv4 (dotted quad, each part 0..255)          <IPV4>
 *   Chinese resident ID numbers (18 characters: region, a real birth date,
 *     sequence, ISO 7064 MOD 11-2 check character) <CN_ID>
 *   payment card numbers (13..19 digits, plain or in groups of 4 / 4-6-5,
 *     Luhn check)                                 <CARD>
 *   phone numbers: mainland China mobile (1[3-9]x xxxx xxxx, optional
 *     +86/0086) and E.164 (+ then 7..15 digits, spaces or dashes allowed)
 *                                                 <PHONE>
 * A candidate must not touch letters or digits on either side, so parts of
 * longer numbers, version strings (1.2.3.4.5), timestamps and words like
 * std::vector stay. Numbers whose check digit fails stay.
 * A pii_masker is read-only after pii_create and shared by threads; each
 * thread has its own pii_scratch.
 */
#ifndef SL_DATA_PII_H
#define SL_DATA_PII_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/clean.h"
#include "runtime/status.h"

typedef enum {
    PII_EMAIL = 0,
    PII_IPV6,
    PII_IPV4,
    PII_CN_ID,
    PII_CARD,
    PII_PHONE,
    PII_TYPE_COUNT
} pii_type;

typedef struct pii_masker pii_masker;
typedef struct pii_scratch pii_scratch;

sl_status pii_create(pii_masker **out);
void pii_destroy(pii_masker *m);
sl_status pii_scratch_create(const pii_masker *m, pii_scratch **out);
void pii_scratch_destroy(pii_scratch *s);

/* Masks text in place (it may grow or shrink); counts[t] += matches of t. */
sl_status pii_mask(const pii_masker *m, pii_scratch *s, clean_buf *text,
                   uint64_t counts[PII_TYPE_COUNT]);

const char *pii_type_name(pii_type t); /* "email", "ipv6", ... */
const char *pii_tag(pii_type t);       /* "<EMAIL>", ... */

/* s: 18 characters. Birth date and check character. */
bool pii_cn_id_valid(const char *s);
/* digits: n ASCII digits. */
bool pii_luhn_valid(const char *digits, size_t n);

#endif
