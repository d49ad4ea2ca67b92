// spm_shim.cc: SentencePiece behind the C functions of spm_shim.h. No exception leaves this file:
// each entry point catches everything and turns it into -1 and a message.
#include "spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

struct spm_processor {
    sentencepiece::SentencePieceProcessor sp;
};

static int fail(char *err, size_t err_size, const char *fmt, ...) {
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// Runs f, turning a thrown exception into -1 and a message.
template <typename F> static int guarded(const char *what, char *err, size_t err_size, F f) {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return fail(err, err_size, "%s: out of host memory", what);
    } catch (const std::exception &e) {
        return fail(err, err_size, "%s: %s", what, e.what());
    } catch (...) {
        return fail(err, err_size, "%s: unknown C++ exception", what);
    }
}

extern "C" int spm_load(const void *model, size_t size, spm_processor **out, char *err, size_t err_size) {
    *out = nullptr;
    return guarded("sentencepiece", err, err_size, [&] {
        spm_processor *p = new spm_processor;
        auto s = p->sp.LoadFromSerializedProto(std::string(static_cast<const char *>(model), size));
        if (!s.ok() || p->sp.GetPieceSize() < 1) {
            delete p;
            return fail(err, err_size, "not a SentencePiece model (%s)", s.ok() ? "no pieces" : s.ToString().c_str());
        }
        *out = p;
        return 0;
    });
}

extern "C" void spm_free(spm_processor *p) { delete p; }

extern "C" int spm_vocab_size(const spm_processor *p) { return p->sp.GetPieceSize(); }
extern "C" int spm_bos_id(const spm_processor *p) { return p->sp.bos_id(); }
extern "C" int spm_eos_id(const spm_processor *p) { return p->sp.eos_id(); }

extern "C" const char *spm_piece(const spm_processor *p, int id, spm_piece_kind *kind) {
    const auto &sp = p->sp;
    *kind = sp.IsByte(id)      ? SPM_PIECE_BYTE
            : sp.IsUnknown(id) ? SPM_PIECE_UNKNOWN
            : sp.IsControl(id) ? SPM_PIECE_CONTROL
            : sp.IsUnused(id)  ? SPM_PIECE_UNUSED
                               : SPM_PIECE_TEXT;
    return sp.IdToPiece(id).c_str(); // a reference into the model: lives as long as p
}

extern "C" int spm_encode(const spm_processor *p, const char *text, size_t len, int32_t *ids, int64_t cap,
                          int64_t *n, char *err, size_t err_size) {
    return guarded("sentencepiece encode", err, err_size, [&] {
        std::vector<int> v;
        auto s = p->sp.Encode(absl::string_view(text, len), &v);
        if (!s.ok()) return fail(err, err_size, "sentencepiece encode: %s", s.ToString().c_str());
        for (size_t i = 0; i < v.size() && static_cast<int64_t>(i) < cap; i++) ids[i] = v[i];
        *n = static_cast<int64_t>(v.size());
        return 0;
    });
}

namespace {
// The lines of a text, each cut into sentences of at most kMax bytes (at UTF-8 character starts)
// so that none exceeds the trainer's max_sentence_length.
class LineIterator : public sentencepiece::SentenceIterator {
  public:
    LineIterator(const char *text, size_t len) : text_(text), len_(len) { Next(); }
    bool done() const override { return done_; }
    const std::string &value() const override { return value_; }
    sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }
    void Next() override {
        if (pos_ >= len_) {
            done_ = true;
            return;
        }
        const char *nl = static_cast<const char *>(std::memchr(text_ + pos_, '\n', len_ - pos_));
        size_t end = nl ? static_cast<size_t>(nl - text_) : len_, take = end - pos_;
        if (take > kMax) {
            take = kMax;
            while (take > 1 && (static_cast<unsigned char>(text_[pos_ + take]) & 0xC0) == 0x80) take--;
        }
        value_.assign(text_ + pos_, take);
        pos_ += take;
        if (pos_ == end) pos_++; // past the newline
    }

  private:
    static constexpr size_t kMax = 4096;
    const char *text_;
    size_t len_, pos_ = 0;
    std::string value_;
    bool done_ = false;
};
} // namespace

extern "C" int spm_train(const char *text, size_t len, int vocab_size, int threads, void **model, size_t *size,
                         char *err, size_t err_size) {
    *model = nullptr;
    *size = 0;
    return guarded("sentencepiece train", err, err_size, [&] {
        const std::unordered_map<std::string, std::string> args = {
            {"model_type", "unigram"},
            {"vocab_size", std::to_string(vocab_size)},
            {"hard_vocab_limit", "false"},           // a small text may give fewer pieces
            {"normalization_rule_name", "identity"}, // text -> ids -> bytes gives the text back
            {"add_dummy_prefix", "false"},
            {"remove_extra_whitespaces", "false"},
            {"allow_whitespace_only_pieces", "true"},
            {"byte_fallback", "true"}, // every byte of every text has an id
            {"user_defined_symbols", "\n"},
            {"num_threads", std::to_string(threads > 0 ? threads : 1)},
            {"minloglevel", "1"},
        };
        LineIterator lines(text, len);
        std::string proto;
        auto s = sentencepiece::SentencePieceTrainer::Train(args, &lines, &proto);
        if (!s.ok()) return fail(err, err_size, "sentencepiece train: %s", s.ToString().c_str());
        void *copy = std::malloc(proto.size() ? proto.size() : 1);
        if (!copy) return fail(err, err_size, "sentencepiece train: out of host memory");
        std::memcpy(copy, proto.data(), proto.size());
        *model = copy;
        *size = proto.size();
        return 0;
    });
}
