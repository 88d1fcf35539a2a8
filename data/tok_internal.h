/* data/tok_internal.h: the tokenizer's internal layout, shared by the files
 * of the tokenizer module only (tokenizer.c, tok_load.c, tok_hf.c,
 * tok_encode.c, tok_decode.c, bpe.c, pretokenize.c, tok_train.c). Nothing outside data/tok*.c and data/bpe.c
 * includes this header.
 *
 * defines: tokenizer (struct), tok_pairmap, tok_bytemap, tok_regex,
 *          the GPT-2 byte<->unicode alphabet, the loaders' entry points and
 *          the Hugging Face pipeline steps (tok_norm, tok_dec), the
 *          loaders' entry points, the encode/decode internals and the BPE
 *          core (bpe_merge, bpe_merge_symbols).
 *
 * Model: every token is an id with a byte string. Merges are a table from a
 * pair of ids (left, right) to (rank, merged id); the BPE loop always merges
 * the adjacent pair with the lowest rank, leftmost on ties (tiktoken's and
 * Hugging Face's order). tiktoken vocabularies have no merge list: the pair
 * (a, b) has the rank of the token whose bytes are a+b, so the loader derives
 * the table from the vocabulary.
 */
#ifndef SL_DATA_TOK_INTERNAL_H
#define SL_DATA_TOK_INTERNAL_H

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "runtime/status.h"

#define TOK_NONE UINT32_MAX
/* Files larger than this are refused (Llama-3's tokenizer.json is 9 MB). */
#define TOK_MAX_FILE_BYTES ((size_t)512 << 20)

/* ---- open-addressing hash maps (read-only after load) ---- */

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t key; /* (uint64_t)left << 32 | right, TOK_PAIR_EMPTY when free */
    uint32_t rank;
    uint32_t merged;
} tok_pair_slot; /* 16 bytes: one cache line access per lookup */

typedef struct {
    tok_pair_slot *slots;
    size_t cap; /* power of two */
    size_t count;
} tok_pairmap;
#define TOK_PAIR_EMPTY UINT64_MAX

sl_status tok_pairmap_init(tok_pairmap *m, size_t expected);
void tok_pairmap_free(tok_pairmap *m);
/* Inserts; when the pair is present keeps the lower rank (first merge wins,
 * as in Hugging Face). */
sl_status tok_pairmap_put(tok_pairmap *m, uint32_t left, uint32_t right, uint32_t rank,
                          uint32_t merged);

static inline uint64_t tok_pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

/* Returns the slot of (left, right) or SIZE_MAX. */
static inline size_t tok_pairmap_find(const tok_pairmap *m, uint32_t left, uint32_t right) {
    uint64_t key = (uint64_t)left << 32 | right;
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_pair_hash(key) & mask;
    for (;;) {
        uint64_t k = m->slots[i].key;
        if (k == key)
            return i;
        if (k == TOK_PAIR_EMPTY)
            return SIZE_MAX;
        i = (i + 1) & mask;
    }
}

/* byte string -> ordinary token id. Strings live in the tokenizer's arena. */
typedef struct {
    uint64_t *slots; /* (hash >> 32) << 32 | token id; UINT64_MAX when free. The
                        hash half rejects most misses without touching the
                        token's bytes. */
    size_t cap;      /* power of two */
    size_t count;
} tok_bytemap;

/* ---- the tokenizer ---- */

typedef enum {
    TOK_KIND_GAP = 0, /* id unused (cl100k has holes before its specials) */
    TOK_KIND_ORDINARY,
    TOK_KIND_SPECIAL,
} tok_kind;

typedef struct {
    char *text;
    size_t len;
    uint32_t id;
    int always; /* a Hugging Face added token with special=false: matched even
                   when specials are not allowed, as Hugging Face does */
} tok_special;

typedef enum {
    TOK_MERGES_EXPLICIT = 0, /* a merge list (GPT-2 vocab.bpe, tokenizer.json) */
    TOK_MERGES_RANKS,        /* tiktoken: rank of a+b's token */
} tok_merge_mode;

typedef enum {
    TOK_MODEL_BYTELEVEL = 0, /* GPT-2 alphabet vocabulary, ByteLevel pre-tokenizer */
    TOK_MODEL_CHARS,         /* SentencePiece-style: characters + <0xNN> byte fallback */
} tok_model;

/* A Hugging Face normalizer step, applied in order to each stretch of text
 * between added tokens. */
typedef enum {
    TOK_NORM_PREPEND = 0, /* text = to + text, unless text is empty */
    TOK_NORM_REPLACE,     /* every occurrence of from (a literal) becomes to */
    TOK_NORM_NFC,
    TOK_NORM_NFKC,
} tok_norm_kind;

typedef struct {
    tok_norm_kind kind;
    char *from, *to;
} tok_norm;

/* Pre-tokenizer of the chars model (byte-level uses the regex). */
typedef enum {
    TOK_SPLIT_NONE = 0,     /* the whole stretch is one piece */
    TOK_SPLIT_METASPACE,    /* ' ' -> replacement, prepend per scheme, split before it */
    TOK_SPLIT_STRING,       /* Split with a literal pattern */
} tok_split_kind;

typedef enum {
    TOK_PREPEND_NEVER = 0,
    TOK_PREPEND_FIRST,  /* only the stretch at the start of the input */
    TOK_PREPEND_ALWAYS,
} tok_prepend_scheme;

typedef enum {
    TOK_SPLIT_MERGED_WITH_PREVIOUS = 0,
    TOK_SPLIT_MERGED_WITH_NEXT,
    TOK_SPLIT_ISOLATED,
} tok_split_behavior;

/* A Hugging Face decoder step, applied in order to the list of token
 * strings (the decode_chain of tokenizers/src/decoders). */
typedef enum {
    TOK_DEC_REPLACE = 0,   /* from -> to in each token */
    TOK_DEC_BYTE_FALLBACK, /* runs of <0xNN> become their UTF-8 text, or one U+FFFD per byte */
    TOK_DEC_FUSE,          /* all tokens into one */
    TOK_DEC_STRIP,         /* up to start leading / stop trailing chars equal to from */
    TOK_DEC_METASPACE,     /* replacement -> ' ' (dropped in the first token unless never) */
} tok_dec_kind;

typedef struct {
    tok_dec_kind kind;
    char *from, *to;
    uint32_t start, stop;
    int prepend; /* METASPACE: prepend scheme is not never */
} tok_dec;

#define TOK_MAX_STEPS 8

struct tokenizer {
    char name[128];
    char hash[17];
    tok_merge_mode merge_mode;
    /* A piece that is itself a token is emitted whole: tiktoken's rule and
     * Hugging Face's ignore_merges. Without it, a piece is emitted whole only
     * when the merges rebuild it (self_merges[id], computed at load). */
    int ignore_merges;
    uint8_t *self_merges; /* [n_ids] 1 when bpe(bytes(id)) == [id] */

    uint32_t n_ids;    /* max id + 1, specials included */
    uint8_t *kind;     /* [n_ids] tok_kind */
    uint64_t *off;     /* [n_ids] offset of the token's bytes in arena */
    uint32_t *len;     /* [n_ids] */
    char *arena;
    size_t arena_len, arena_cap;

    uint32_t byte_id[256]; /* the token of each single byte */
    tok_bytemap bytes;     /* ordinary tokens by their bytes */
    tok_pairmap pairs;

    tok_special *specials; /* sorted by length, longest first */
    size_t n_specials, cap_specials;
    uint8_t special_first[256]; /* 1 when some special starts with this byte */

    int64_t bos_id, eos_id;

    tok_pretokenizer pretok;   /* which known pattern, when pattern_custom is 0 */
    int pattern_custom;        /* pattern came from the file and is not a known one */
    char *pattern;             /* the regex as given (hashed, written by the trainer) */
    pcre2_code *re;            /* compiled with UTF|UCP|MATCH_INVALID_UTF, JIT; NULL
                                  for the chars model */

    /* Hugging Face pipeline (tok_hf.c); all zero for byte-level files with
     * no normalizer, whose decode is the tokens' bytes. */
    tok_model model;
    int byte_fallback;    /* chars model: byte_id[] holds the <0xNN> tokens */
    int replace_invalid;  /* invalid UTF-8 becomes U+FFFD before normalizing
                             (the reference takes only strings) */
    tok_norm norm[TOK_MAX_STEPS];
    int n_norm;
    tok_split_kind split;
    char split_str[16];   /* METASPACE: the replacement; STRING: the pattern */
    tok_prepend_scheme prepend;
    int split_on;         /* METASPACE: split before each replacement */
    tok_split_behavior split_behavior;
    tok_dec dec[TOK_MAX_STEPS];
    int n_dec;
    char *pipeline;       /* canonical JSON of the pipeline, hashed; NULL when plain */
};

static inline const char *tok_bytes(const tokenizer *t, uint32_t id) {
    return t->arena + t->off[id];
}

/* ---- construction helpers (tokenizer.c) ---- */

/* An empty tokenizer; the loaders fill it. */
sl_status tok_new(tokenizer **out);
/* Sets id's bytes; grows the id space. kind: ORDINARY or SPECIAL. */
sl_status tok_set_token(tokenizer *t, uint32_t id, const void *bytes, size_t len, tok_kind kind);
/* Registers a special (its bytes also set as the token's). */
sl_status tok_put_special(tokenizer *t, const char *text, size_t len, uint32_t id, int always);
/* Builds the bytes map and byte_id table from the ordinary tokens; fails
 * naming a missing single byte or a duplicate token. src names the file. */
sl_status tok_index_vocab(tokenizer *t, const char *src);
/* Derives the pair table from the vocabulary (tiktoken ranks). */
sl_status tok_derive_rank_pairs(tokenizer *t);
/* Compiles the pre-tokenizer: a known one (pattern NULL) or a regex. */
sl_status tok_set_pattern(tokenizer *t, tok_pretokenizer known, const char *pattern,
                          const char *src);
/* After everything is set: self_merges, sorted specials, bos/eos defaults,
 * the hash. */
sl_status tok_finish(tokenizer *t);
uint32_t tok_bytemap_get(const tokenizer *t, const void *bytes, size_t len);

/* ---- GPT-2 byte-level alphabet (tok_load.c) ---- */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
 * 68 map to U+0100.. in byte order. */
#define TOK_ALPHABET_CPS 324
typedef struct {
    uint32_t b2c[256];
    int16_t c2b[TOK_ALPHABET_CPS]; /* -1 when not in the alphabet */
} tok_alphabet;
void tok_alphabet_init(tok_alphabet *a);
/* Decodes a byte-level token string (UTF-8 of alphabet code points) into
 * bytes; out has room for slen bytes. Returns the byte count, or -1 when s
 * is not UTF-8 or holds a code point outside the alphabet. */
long tok_bytelevel_decode(const tok_alphabet *a, const char *s, size_t slen, uint8_t *out);
/* Encodes bytes as the byte-level string; out has room for 2*len+1 bytes
 * (NUL-terminated). Returns the length. */
size_t tok_bytelevel_encode(const tok_alphabet *a, const uint8_t *b, size_t len, char *out);

/* ---- shared by the loaders (tok_load.c) ---- */
sl_status tok_read_json(const char *path, cJSON **out);
int tok_json_id(const cJSON *v, uint32_t *id);
/* Adds a vocabulary {"token": id}: byte-level strings when bytelevel is
 * nonzero, else the strings themselves (chars model). */
sl_status tok_add_vocab(tokenizer *t, const cJSON *vocab, const char *path, const char *where,
                        int gpt2_specials, int bytelevel);
/* One merge "l r", its parts byte-level strings or (bytelevel 0) raw. */
sl_status tok_add_merge(tokenizer *t, const tok_alphabet *a, int bytelevel, const char *l,
                        size_t ll, const char *r, size_t rl, uint32_t rank, const char *path,
                        const char *where);

/* ---- loaders (tok_load.c, tok_hf.c); each names path in its errors ---- */
/* A Hugging Face tokenizer.json or tiktoken's npm JSON ({pat_str,
 * special_tokens, bpe_ranks}), told apart by their keys. */
sl_status tok_load_json(tokenizer *t, const char *path);
/* A Hugging Face tokenizer.json, parsed (tok_hf.c). */
sl_status tok_load_hf(tokenizer *t, const cJSON *root, const char *path);
/* Frees the pipeline steps (tok_hf.c). */
void tok_pipeline_free(tokenizer *t);
sl_status tok_load_gpt2_files(tokenizer *t, const char *encoder_json, const char *vocab_bpe);
/* A tiktoken rank file ("base64 rank" lines); the pre-tokenizer and the
 * specials come from the encoding's name (cl100k_base, r50k_base, ...). */
sl_status tok_load_tiktoken_ranks(tokenizer *t, const char *path, const char *encoding);

/* ---- pre-tokenizer (pretokenize.c) ---- */

/* The known patterns, written with Unicode White_Space spelled out for \s
 * (so that PCRE2 agrees with Rust's regex and Python's regex module). */
const char *tok_pattern_text(tok_pretokenizer p);
/* The patterns as their sources write them (for recognizing files). */
const char *tok_pattern_source(tok_pretokenizer p);
/* Compiles with UTF, UCP and MATCH_INVALID_UTF, then JIT. */
sl_status tok_regex_compile(const char *pattern, pcre2_code **out, const char *src);

/* Calls fn(ctx, piece, len) for each pre-token of text[0..len): the regex
 * matches, and every run of bytes the regex cannot match (invalid UTF-8) as
 * a piece of its own. md is match data from the same pattern. */
typedef sl_status (*tok_piece_fn)(void *ctx, const uint8_t *piece, size_t len);
sl_status tok_split(const pcre2_code *re, pcre2_match_data *md, const uint8_t *text, size_t len,
                    tok_piece_fn fn, void *ctx);

/* ---- BPE core (bpe.c) ---- */

/* Scratch for one thread; grows as pieces need. */
typedef struct {
    uint32_t *id, *prev, *next; /* symbol list, indexed by byte offset */
    uint64_t *heap;             /* (rank << 32 | position) min-heap */
    size_t cap, heap_cap;
} bpe_scratch;

void bpe_scratch_free(bpe_scratch *s);
/* Room for n symbols in s->id (the caller fills s->id[0..n) for
 * bpe_merge_symbols). */
sl_status bpe_reserve(bpe_scratch *s, size_t n);
/* Applies the merges to the n symbols in s->id; same outputs as bpe_merge. */
sl_status bpe_merge_symbols(const tokenizer *t, bpe_scratch *s, size_t n, const uint32_t **ids,
                            size_t *n_out);
/* Applies the merges to one piece (len >= 1): *ids points into the scratch
 * (valid until its next use) and *n receives the token count. */
sl_status bpe_merge(const tokenizer *t, bpe_scratch *s, const uint8_t *piece, size_t len,
                    const uint32_t **ids, size_t *n);

/* ---- encode internals (tok_encode.c) ---- */

/* The tokens of one pre-token under t's model (byte-level or chars): *ids
 * points into s. Used by encode and by tok_finish (self_merges). */
sl_status tok_merge_piece(const tokenizer *t, bpe_scratch *s, const uint8_t *piece, size_t len,
                          const uint32_t **ids, size_t *n);

#endif
