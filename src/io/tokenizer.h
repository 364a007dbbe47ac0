/* tokenizer.h — the CLIP byte-level BPE tokenizer (text -> ids for the CLIP text encoder).
 *
 *     kn_tokenizer *tok = kn_tokenizer_load("models/ms-1.7b/tokenizer");   // or the .txt.gz
 *     if (!tok) { fprintf(stderr, "kinema: %s\n", kn_last_error()); return 1; }
 *     int32_t ids[77];
 *     int pad = kn_tokenizer_token_id(tok, "!");                         // SD2 / OpenCLIP style
 *     kn_tokenize_padded(tok, "a panda playing a guitar", ids, 77, pad);  // bos .. eos pad pad ..
 *     kn_tokenizer_free(tok);
 *
 * Behaviour equals transformers' SLOW CLIPTokenizer when ftfy is NOT installed (its fallback is
 * BasicTokenizer(strip_accents=False, do_split_on_punc=False)):
 *   1. the text is split at the literal special tokens "<|startoftext|>" / "<|endoftext|>"
 *      (case-sensitive, as the added-token trie does); each piece is tokenized alone;
 *   2. cleanup: NUL, U+FFFD and every Unicode category C* character other than \t \n \r are
 *      deleted; other whitespace (Zs, \t \n \r) becomes a space; spaces go around CJK ideographs;
 *      NFC normalisation; split on whitespace; each word lower-cased like Python's str.lower();
 *   3. the regex <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|
 *      [^\s\p{L}\p{N}]+ cuts words into pieces; each piece is UTF-8 encoded, mapped byte by
 *      byte to GPT-2's bytes_to_unicode alphabet, and BPE-merged by merge rank with "</w>"
 *      on its last symbol;
 *   4. ids are wrapped as <|startoftext|> ... <|endoftext|>.
 * Unicode tables (classes L/N/C/Zs, lower case, NFC) come from Python 3.11's unicodedata 14.0
 * (dev/gen_tokenizer_unicode.py), the Python that produced the reference ids.
 *
 * Any byte string is accepted. Invalid UTF-8 (stray continuation bytes, truncated or overlong
 * sequences, surrogates, > U+10FFFF) decodes to U+FFFD per maximal invalid subpart, exactly as
 * Python's bytes.decode("utf-8", errors="replace"); step 2 then deletes U+FFFD, so invalid bytes
 * produce no tokens (they act as nothing, not as a separator).
 *
 * Thread safety: a loaded tokenizer is read-only except for its BPE word cache; use one
 * tokenizer from one thread at a time (or one tokenizer per thread). */
#ifndef KN_TOKENIZER_H
#define KN_TOKENIZER_H

#include "core/core.h"

typedef struct kn_tokenizer kn_tokenizer;

#define KN_CLIP_MAX_LENGTH 77

/* Loads a tokenizer from
 *   - a folder with vocab.json + merges.txt (transformers / diffusers "tokenizer/" layout),
 *   - OpenAI's bpe_simple_vocab_16e6.txt.gz (vocab built as simple_tokenizer.py does), or
 *   - a folder holding bpe_simple_vocab_16e6.txt.gz.
 * Returns NULL with a one-line message (file, line, rule broken) on failure. */
kn_tokenizer *kn_tokenizer_load(const char *dir_or_file);
/* The same from memory (copied; the caller keeps its buffers): vocab_json + merges as in a
 * transformers folder, or vocab_json = NULL and merges = the text of bpe_simple_vocab_16e6.txt
 * (vocab built as simple_tokenizer.py does). Messages name "vocab.json" / "merges.txt". */
kn_tokenizer *kn_tokenizer_from_memory(const char *vocab_json, size_t vocab_len, const char *merges,
                                       size_t merges_len);
void kn_tokenizer_free(kn_tokenizer *tok);

int kn_tokenizer_vocab_size(const kn_tokenizer *tok);
int kn_tokenizer_bos(const kn_tokenizer *tok); /* <|startoftext|> */
int kn_tokenizer_eos(const kn_tokenizer *tok); /* <|endoftext|> */
/* Id of a vocabulary entry given in its vocab.json spelling ("<|endoftext|>", "!", "a</w>"),
 * -1 (and a message) if absent. */
int kn_tokenizer_token_id(const kn_tokenizer *tok, const char *token);
/* The vocab.json spelling of id, NULL if out of range. */
const char *kn_tokenizer_token_str(const kn_tokenizer *tok, int id);

/* Tokenizes text (any bytes, NUL-terminated) into ids[0..*n) = bos ... eos, untruncated.
 * If more than max ids would be produced, fails with KN_ERR_ARG and sets *n to the count
 * needed (so a caller can retry with a larger buffer); ids[0..max) then hold the first max. */
kn_status kn_tokenize(kn_tokenizer *tok, const char *text, int32_t *ids, int max, int *n);

/* transformers' truncation=True, padding="max_length", max_length=len: bos + the first len-2
 * word ids + eos, then pad_id up to len. len >= 2. mask (may be NULL) gets 1 for real ids and
 * 0 for padding. Returns the number of real (unpadded) ids through *n_real (may be NULL). */
kn_status kn_tokenize_padded(kn_tokenizer *tok, const char *text, int32_t *ids, int len,
                             int32_t pad_id, int32_t *mask, int *n_real);

/* Decodes ids to text (for debugging): tokens joined, "</w>" -> " ", bytes_to_unicode undone,
 * invalid UTF-8 kept as bytes, trailing space removed. Writes at most cap-1 bytes + NUL;
 * fails with KN_ERR_ARG on an id out of range or a too-small buffer (output then truncated). */
kn_status kn_detokenize(const kn_tokenizer *tok, const int32_t *ids, int n, char *out, size_t cap);

/* BPE runs the naive O(m^2) loop on pieces shorter than `bytes` UTF-8 bytes and an O(m log m)
 * heap version (same result) on longer ones (default 48). For tests; returns the old value. */
int kn_tokenizer_set_heap_threshold(kn_tokenizer *tok, int bytes);

#endif
