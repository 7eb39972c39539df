// llama_ref: reference-output generator for Ferrite, linked statically against llama.cpp (commit 0c1e570, as
// vendored by the llama-cpp-python 0.3.36 sdist). Build with scripts/reference/build.sh.
//
//   llama_ref greedy MODEL PROMPTS.json N [MODEL_SHORT]   > greedy.json
//   llama_ref logits MODEL TEXTFILE N                     > logits.json
//   llama_ref tokens MODEL TEXTFILE                       (token count as llama-perplexity tokenizes)
//   llama_ref detok MODEL ID...                           (prints the text of token ids)
//
// Options (before the mode): --fa auto|on|off  (default auto, as in llama.cpp's own tools)
//                            --threads T       (default 2)
//                            --kv f16|f32      (KV cache type, default f16)
//                            --ubatch U        (physical batch size, default = n_batch = 512)
//                            --verbose         (pass llama.cpp's log through to stderr)
//
// greedy: every prompt of PROMPTS.json ({"prompts": [{"id", "text", "models"?: [short names]}]}) whose "models"
//   list is absent or holds MODEL_SHORT is tokenized the way llama.cpp's tools tokenize a prompt by default
//   (add_special = true, so BOS only where the model's metadata asks for it; parse_special = true), evaluated in
//   one batch, then decoded greedily one token at a time for at most N steps, stopping after an
//   end-of-generation token (which is recorded as the last generated id). Greedy = argmax over the raw logits,
//   lowest token id on exact ties (what llama_sampler_init_greedy does).
// logits: the text file is tokenized with add_special = true and parse_special = false (as llama-perplexity
//   does), cut to its first N tokens, and evaluated in ONE llama_decode call with logits for every position.
//   Output per position: the top-10 (id, logit) pairs (logit descending, lowest id first on ties) and the
//   logsumexp of the full vocabulary's logits (computed in double).
//
// JSON goes to stdout; floats are printed with %.9g (f32 round-trips exactly).
#include "llama.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char * kLlamaCppCommit = "0c1e570";
constexpr const char * kLlamaCppSource = "llama-cpp-python==0.3.36 sdist, vendor/llama.cpp";

struct options {
    llama_flash_attn_type fa = LLAMA_FLASH_ATTN_TYPE_AUTO;
    int  n_threads = 2;
    int  n_ubatch  = 0;       // 0: = n_batch
    ggml_type kv   = GGML_TYPE_F16;
    bool verbose   = false;
};

std::string g_log;  // everything llama.cpp logged, to find out how "auto" settings were resolved
bool g_verbose = false;

void log_cb(ggml_log_level level, const char * text, void *) {
    (void) level;
    g_log += text;
    if (g_verbose) {
        fputs(text, stderr);
    }
}

[[noreturn]] void die(const std::string & msg) {
    fprintf(stderr, "llama_ref: %s\n", msg.c_str());
    if (!g_verbose && !g_log.empty()) {
        fprintf(stderr, "---- llama.cpp log ----\n%s", g_log.c_str());
    }
    exit(1);
}

std::string json_str(const std::string & s) {
    // nlohmann's dump escapes control characters and keeps UTF-8 as is
    return nlohmann::json(s).dump();
}

std::string fmt_f(double v) {
    if (std::isnan(v)) return "null";
    if (std::isinf(v)) return v > 0 ? "1e9999" : "-1e9999";  // never expected; still valid-ish for parsers
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

std::string fmt_d(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

template <typename T, typename F>
std::string join(const std::vector<T> & xs, F f) {
    std::string out = "[";
    for (size_t i = 0; i < xs.size(); ++i) {
        if (i) out += ",";
        out += f(xs[i]);
    }
    return out + "]";
}

std::string ids_json(const std::vector<llama_token> & ids) {
    return join(ids, [](llama_token t) { return std::to_string(t); });
}

std::string floats_json(const std::vector<float> & xs) {
    return join(xs, [](float x) { return fmt_f(x); });
}

std::string basename_of(const std::string & path) {
    const size_t p = path.find_last_of('/');
    return p == std::string::npos ? path : path.substr(p + 1);
}

std::string read_file(const std::string & path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) die("cannot read " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct session {
    llama_model   * model = nullptr;
    llama_context * ctx   = nullptr;
    const llama_vocab * vocab = nullptr;
    int n_vocab = 0;
    llama_context_params cparams{};
    llama_model_params   mparams{};
    std::string model_path;

    ~session() {
        if (ctx) llama_free(ctx);
        if (model) llama_model_free(model);
    }
};

void load_model(session & s, const std::string & path) {
    s.model_path = path;
    s.mparams = llama_model_default_params();
    s.mparams.n_gpu_layers = 0;  // CPU backend only (this build has no other backend anyway)
    s.model = llama_model_load_from_file(path.c_str(), s.mparams);
    if (!s.model) die("unable to load model " + path);
    s.vocab   = llama_model_get_vocab(s.model);
    s.n_vocab = llama_vocab_n_tokens(s.vocab);
}

// One context per prompt / text: a fresh KV cache, like a fresh llama-cli run.
void new_context(session & s, const options & o, uint32_t n_ctx, uint32_t n_batch) {
    if (s.ctx) {
        llama_free(s.ctx);
        s.ctx = nullptr;
    }
    s.cparams = llama_context_default_params();
    s.cparams.n_ctx           = n_ctx;
    s.cparams.n_batch         = n_batch;
    s.cparams.n_ubatch        = o.n_ubatch > 0 ? (uint32_t) o.n_ubatch : n_batch;
    s.cparams.n_seq_max       = 1;
    s.cparams.n_threads       = o.n_threads;
    s.cparams.n_threads_batch = o.n_threads;
    s.cparams.flash_attn_type = o.fa;
    s.cparams.type_k          = o.kv;
    s.cparams.type_v          = o.kv;
    s.cparams.swa_full        = false;  // common_params default (llama-cli, llama-perplexity, ...)
    s.cparams.kv_unified      = false;
    s.cparams.no_perf         = true;
    s.ctx = llama_init_from_model(s.model, s.cparams);
    if (!s.ctx) die("failed to create the llama_context");
}

// How llama.cpp resolved flash_attn = auto, read from its log ("Flash Attention enabled" / "... not supported").
std::string flash_attn_resolved(const options & o) {
    if (o.fa == LLAMA_FLASH_ATTN_TYPE_ENABLED)  return "enabled";
    if (o.fa == LLAMA_FLASH_ATTN_TYPE_DISABLED) return "disabled";
    const bool on  = g_log.find("Flash Attention enabled") != std::string::npos;
    const bool off = g_log.find("Flash Attention not supported") != std::string::npos;
    if (on && !off) return "enabled";
    if (off && !on) return "disabled";
    return "unknown";
}

// Size of the weights llama.cpp repacked for its CPU kernels ("CPU_REPACK model buffer size = X MiB"), 0 if none.
double repack_mib() {
    const std::string key = "CPU_REPACK model buffer size =";
    const size_t p = g_log.find(key);
    return p == std::string::npos ? 0.0 : atof(g_log.c_str() + p + key.size());
}

std::vector<llama_token> tokenize(const session & s, const std::string & text, bool add_special, bool parse_special) {
    int n = -llama_tokenize(s.vocab, text.data(), (int32_t) text.size(), nullptr, 0, add_special, parse_special);
    if (n < 0) n = -n;  // a zero-token text returns 0
    std::vector<llama_token> out(n);
    if (n > 0 && llama_tokenize(s.vocab, text.data(), (int32_t) text.size(), out.data(), n, add_special, parse_special) != n) {
        die("tokenization failed");
    }
    return out;
}

// Decode tokens[0..n) at positions pos0.. in one llama_process call; logits for all or only the last.
void decode(session & s, const llama_token * tokens, int n, llama_pos pos0, bool all_logits) {
    llama_batch_ext * batch = llama_batch_ext_init(s.ctx);
    for (int i = 0; i < n; ++i) {
        const int32_t idx = llama_batch_ext_add_token(batch, 0, tokens[i]);
        if (idx < 0) die("batch full / invalid token");
        const llama_pos pos = pos0 + i;
        llama_batch_ext_set_pos(batch, idx, &pos);
        llama_batch_ext_set_output_logits(batch, idx, all_logits || i == n - 1);
    }
    const int rc = llama_process(s.ctx, LLAMA_PROCESS_TYPE_DECODE, batch);
    llama_batch_ext_free(batch);
    if (rc != 0) die("llama_process failed with " + std::to_string(rc));
}

std::string settings_json(const session & s, const options & o, bool add_special, bool parse_special) {
    const auto & c = s.cparams;
    std::string j = "{";
    j += "\"llama_cpp_commit\":" + json_str(kLlamaCppCommit);
    j += ",\"llama_cpp_source\":" + json_str(kLlamaCppSource);
    j += ",\"backend\":\"CPU\"";
    j += ",\"n_threads\":" + std::to_string(c.n_threads);
    j += ",\"n_threads_batch\":" + std::to_string(c.n_threads_batch);
    j += ",\"n_ctx\":" + std::to_string(c.n_ctx);
    j += ",\"n_batch\":" + std::to_string(c.n_batch);
    j += ",\"n_ubatch\":" + std::to_string(c.n_ubatch);
    j += ",\"n_seq_max\":" + std::to_string(c.n_seq_max);
    j += std::string(",\"type_k\":\"") + ggml_type_name(c.type_k) + "\",\"type_v\":\"" + ggml_type_name(c.type_v) + "\"";
    j += ",\"flash_attn\":" + json_str(llama_flash_attn_type_name(o.fa));
    j += ",\"flash_attn_resolved\":" + json_str(flash_attn_resolved(o));
    j += std::string(",\"swa_full\":") + (c.swa_full ? "true" : "false");
    j += std::string(",\"kv_unified\":") + (c.kv_unified ? "true" : "false");
    j += std::string(",\"use_extra_bufts\":") + (s.mparams.use_extra_bufts ? "true" : "false");
    j += ",\"repack_buffer_mib\":" + fmt_f(repack_mib());
    j += ",\"n_gpu_layers\":0";
    j += std::string(",\"add_special\":") + (add_special ? "true" : "false");
    j += std::string(",\"parse_special\":") + (parse_special ? "true" : "false");
    j += std::string(",\"model_add_bos\":") + (llama_vocab_get_add_bos(s.vocab) ? "true" : "false");
    j += ",\"bos_id\":" + std::to_string(llama_vocab_bos(s.vocab));
    j += ",\"n_vocab\":" + std::to_string(s.n_vocab);
    j += "}";
    return j;
}

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int run_greedy(const options & o, const std::string & model_path, const std::string & prompts_path, int n_predict,
               const std::string & model_short) {
    const double t0 = now_s();
    nlohmann::json pj = nlohmann::json::parse(read_file(prompts_path));
    session s;
    load_model(s, model_path);

    const uint32_t n_ctx = 512;
    std::string settings;
    std::string out_prompts;
    int n_done = 0;
    for (const auto & p : pj.at("prompts")) {
        if (p.contains("models") && !model_short.empty()) {
            bool ok = false;
            for (const auto & m : p.at("models")) ok |= m.get<std::string>() == model_short;
            if (!ok) continue;
        }
        const std::string id   = p.at("id").get<std::string>();
        const std::string text = p.at("text").get<std::string>();
        const std::vector<llama_token> prompt = tokenize(s, text, true, true);
        if (prompt.empty()) die("prompt " + id + " tokenizes to nothing");
        if (prompt.size() + n_predict > n_ctx) die("prompt " + id + " too long for n_ctx");

        new_context(s, o, n_ctx, n_ctx);
        if (settings.empty()) settings = settings_json(s, o, true, true);

        std::vector<llama_token> gen;
        std::vector<float> chosen_logits, gaps;
        std::string stop = "length";
        decode(s, prompt.data(), (int) prompt.size(), 0, false);
        llama_pos pos = (llama_pos) prompt.size();
        for (int step = 0; step < n_predict; ++step) {
            const float * lg = llama_get_logits_ith(s.ctx, -1);
            if (!lg) die("no logits");
            int best = 0;
            for (int t = 1; t < s.n_vocab; ++t) if (lg[t] > lg[best]) best = t;
            float second = -INFINITY;
            for (int t = 0; t < s.n_vocab; ++t) if (t != best && lg[t] > second) second = lg[t];
            gen.push_back(best);
            chosen_logits.push_back(lg[best]);
            gaps.push_back(lg[best] - second);
            if (llama_vocab_is_eog(s.vocab, best)) {
                stop = "eog";
                break;
            }
            if (step + 1 == n_predict) break;
            const llama_token tok = best;
            decode(s, &tok, 1, pos++, false);
        }
        if (n_done++) out_prompts += ",\n";
        out_prompts += "    {\"id\":" + json_str(id) + ",\"text\":" + json_str(text) +
                       ",\n     \"prompt_ids\":" + ids_json(prompt) +
                       ",\n     \"generated_ids\":" + ids_json(gen) +
                       ",\n     \"logits\":" + floats_json(chosen_logits) +
                       ",\n     \"top2_gaps\":" + floats_json(gaps) +
                       ",\n     \"stop\":" + json_str(stop) + "}";
        fprintf(stderr, "llama_ref: %s: %zu prompt tokens, %zu generated (%s)\n", id.c_str(), prompt.size(),
                gen.size(), stop.c_str());
    }
    printf("{\n  \"format\": \"ferrite-reference-greedy/1\",\n");
    printf("  \"model\": %s,\n", json_str(basename_of(model_path)).c_str());
    if (!model_short.empty()) printf("  \"model_short\": %s,\n", json_str(model_short).c_str());
    printf("  \"n_predict\": %d,\n", n_predict);
    printf("  \"settings\": %s,\n", settings.c_str());
    printf("  \"prompts\": [\n%s\n  ]\n}\n", out_prompts.c_str());
    fprintf(stderr, "llama_ref: greedy done in %.1f s\n", now_s() - t0);
    return 0;
}

int run_logits(const options & o, const std::string & model_path, const std::string & text_path, int n_pos) {
    const double t0 = now_s();
    const std::string text = read_file(text_path);
    session s;
    load_model(s, model_path);
    std::vector<llama_token> toks = tokenize(s, text, true, false);
    if ((int) toks.size() < n_pos) {
        die("text has only " + std::to_string(toks.size()) + " tokens, need " + std::to_string(n_pos));
    }
    toks.resize(n_pos);
    const uint32_t n_ctx = 512;
    if ((uint32_t) n_pos > n_ctx) die("N must be <= 512");
    new_context(s, o, n_ctx, n_ctx);  // n_batch = n_ubatch = 512 >= N: the whole text is one ubatch
    decode(s, toks.data(), n_pos, 0, true);

    std::string rows;
    std::vector<int> idx(s.n_vocab);
    for (int i = 0; i < n_pos; ++i) {
        const float * lg = llama_get_logits_ith(s.ctx, i);
        if (!lg) die("no logits for position " + std::to_string(i));
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + 10, idx.end(), [&](int a, int b) {
            return lg[a] > lg[b] || (lg[a] == lg[b] && a < b);
        });
        double mx = -INFINITY;
        for (int t = 0; t < s.n_vocab; ++t) mx = std::max(mx, (double) lg[t]);
        double sum = 0.0;
        for (int t = 0; t < s.n_vocab; ++t) sum += std::exp((double) lg[t] - mx);
        const double lse = mx + std::log(sum);
        std::vector<llama_token> ids(idx.begin(), idx.begin() + 10);
        std::vector<float> vals;
        for (int k = 0; k < 10; ++k) vals.push_back(lg[idx[k]]);
        if (i) rows += ",\n";
        rows += "    {\"pos\":" + std::to_string(i) + ",\"top_ids\":" + ids_json(ids) + ",\"top_logits\":" +
                floats_json(vals) + ",\"logsumexp\":" + fmt_d(lse) + "}";
    }
    printf("{\n  \"format\": \"ferrite-reference-logits/1\",\n");
    printf("  \"model\": %s,\n", json_str(basename_of(model_path)).c_str());
    printf("  \"text_file\": %s,\n", json_str(basename_of(text_path)).c_str());
    printf("  \"n_positions\": %d,\n", n_pos);
    printf("  \"top_k\": 10,\n");
    printf("  \"settings\": %s,\n", settings_json(s, o, true, false).c_str());
    printf("  \"token_ids\": %s,\n", ids_json(toks).c_str());
    printf("  \"positions\": [\n%s\n  ]\n}\n", rows.c_str());
    fprintf(stderr, "llama_ref: logits done in %.1f s\n", now_s() - t0);
    return 0;
}

// tokens MODEL TEXTFILE: tokenize like llama-perplexity (add_special = true, parse_special = false); prints
// {"n_tokens": N, "first_ids": [first 16 ids]}.
int run_tokens(const std::string & model_path, const std::string & text_path) {
    const std::string text = read_file(text_path);
    session s;
    load_model(s, model_path);
    std::vector<llama_token> toks = tokenize(s, text, true, false);
    std::vector<llama_token> first(toks.begin(), toks.begin() + std::min<size_t>(16, toks.size()));
    printf("{\"n_tokens\": %zu, \"first_ids\": %s}\n", toks.size(), ids_json(first).c_str());
    return 0;
}

// detok MODEL ID...: print the pieces of the given token ids (special tokens rendered), for eyeballing fixtures.
int run_detok(const std::string & model_path, char ** ids, int n) {
    session s;
    load_model(s, model_path);
    std::string out;
    for (int i = 0; i < n; ++i) {
        char buf[512];
        const int k = llama_token_to_piece(s.vocab, atoi(ids[i]), buf, sizeof buf, 0, true);
        if (k < 0) die("token_to_piece failed");
        out.append(buf, k);
    }
    printf("%s\n", out.c_str());
    return 0;
}

void usage() {
    fprintf(stderr,
            "usage: llama_ref [--fa auto|on|off] [--threads T] [--kv f16|f32] [--ubatch U] [--verbose] greedy MODEL PROMPTS.json N [MODEL_SHORT]\n"
            "       llama_ref [options] logits MODEL TEXTFILE N\n"
            "       llama_ref tokens MODEL TEXTFILE\n"
            "       llama_ref detok MODEL ID...\n");
    exit(2);
}

}  // namespace

int main(int argc, char ** argv) {
    std::setlocale(LC_NUMERIC, "C");
    options o;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; ++i) {
        const std::string a = argv[i];
        if (a == "--fa" && i + 1 < argc) {
            const std::string v = argv[++i];
            if (v == "auto") o.fa = LLAMA_FLASH_ATTN_TYPE_AUTO;
            else if (v == "on") o.fa = LLAMA_FLASH_ATTN_TYPE_ENABLED;
            else if (v == "off") o.fa = LLAMA_FLASH_ATTN_TYPE_DISABLED;
            else usage();
        } else if (a == "--threads" && i + 1 < argc) {
            o.n_threads = atoi(argv[++i]);
        } else if (a == "--kv" && i + 1 < argc) {
            const std::string v = argv[++i];
            if (v == "f16") o.kv = GGML_TYPE_F16;
            else if (v == "f32") o.kv = GGML_TYPE_F32;
            else usage();
        } else if (a == "--ubatch" && i + 1 < argc) {
            o.n_ubatch = atoi(argv[++i]);
        } else if (a == "--verbose") {
            o.verbose = true;
        } else {
            usage();
        }
    }
    g_verbose = o.verbose;
    llama_log_set(log_cb, nullptr);
    llama_backend_init();
    if (argc - i == 3 && strcmp(argv[i], "tokens") == 0) return run_tokens(argv[i + 1], argv[i + 2]);
    if (argc - i >= 2 && strcmp(argv[i], "detok") == 0) return run_detok(argv[i + 1], argv + i + 2, argc - i - 2);
    if (argc - i < 4) usage();
    const std::string mode = argv[i];
    try {
        if (mode == "greedy") {
            return run_greedy(o, argv[i + 1], argv[i + 2], atoi(argv[i + 3]), argc - i > 4 ? argv[i + 4] : "");
        }
        if (mode == "logits") {
            return run_logits(o, argv[i + 1], argv[i + 2], atoi(argv[i + 3]));
        }
    } catch (const std::exception & e) {
        die(e.what());
    }
    usage();
}
