// llama_detokenize as a filter, for ferrite-tokenizer's decode fixtures (built and driven by
// scripts/reference/tokenizer_fixtures.py against the static libraries of scripts/build-llama-cpp.sh).
//
//   detokenize_reference MODEL.gguf < requests > replies
//
// Each request line is "REMOVE_SPECIAL UNPARSE_SPECIAL ID ID ...", each reply line the hex of the bytes
// llama_detokenize writes for it (an empty line for none).

#include "llama.h"

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

static void quiet(enum ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf < requests\n", argv[0]);
        return 1;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    auto params = llama_model_default_params();
    params.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], params);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        int remove_special = 0, unparse_special = 0;
        in >> remove_special >> unparse_special;
        std::vector<llama_token> ids;
        for (llama_token id; in >> id;) {
            ids.push_back(id);
        }
        std::string text(ids.size() * 16 + 16, '\0');
        int32_t n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), &text[0], (int32_t) text.size(),
                                     remove_special != 0, unparse_special != 0);
        if (n < 0) {
            text.resize(-n);
            n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), &text[0], (int32_t) text.size(),
                                 remove_special != 0, unparse_special != 0);
        }
        text.resize(n < 0 ? 0 : n);
        for (unsigned char c : text) {
            printf("%02x", c);
        }
        printf("\n");
    }
    fflush(stdout);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
