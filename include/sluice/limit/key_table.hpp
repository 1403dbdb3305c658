#pragma once
// The per-key state of one limiter: a flat open-addressing table (linear
// probing, backward-shift deletion, no tombstones) with each key's state stored
// inline next to its key. Across 100,000 keys a decision then costs one cache
// miss for the slot (a node-based map costs one for the bucket, one for the
// node, and one more for state allocated apart). Keys are 64-bit hashes
// already, but small ones (0 for an unkeyed limit) are mixed once more
// (Fibonacci hashing) so neighbouring keys do not cluster.
//
// Any insert may move every slot (growth) and an erase moves slots after it:
// a pointer into the table is valid only until the next insert or erase.
//
// A slot is aligned to its size rounded up to a power of two (at most a cache
// line), so that no slot straddles two cache lines; each slot has one spare
// flag for its owner (the limiter marks keys with vendor feedback).

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sluice::limit::detail {

template <class Value>
class KeyTable {
public:
private:
    struct Layout {
        std::uint64_t key;
        bool used;
        bool flag;
        Value value;
    };

public:
    struct alignas(std::min<std::size_t>(64, std::bit_ceil(sizeof(Layout)))) Slot {
        std::uint64_t key = 0;
        bool used = false;
        bool flag = false;  // the owner's; false in a fresh slot
        Value value{};
    };

    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return slots_.size(); }
    static constexpr std::size_t slot_bytes() noexcept { return sizeof(Slot); }

    Slot* find_slot(std::uint64_t key) noexcept {
        if (size_ == 0) return nullptr;
        for (std::size_t i = home(key);; i = (i + 1) & mask_) {
            Slot& s = slots_[i];
            if (!s.used) return nullptr;
            if (s.key == key) return &s;
        }
    }
    // Starts loading the line(s) of `key`'s home slot, where a lookup of it
    // begins (and, below 3/4 full, usually ends).
    void prefetch(std::uint64_t key) const noexcept {
        if (slots_.empty()) return;
        const Slot* s = &slots_[home(key)];
        for (std::size_t line = 0; line < sizeof(Slot); line += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(s) + line);
    }

    Value* find(std::uint64_t key) noexcept {
        Slot* s = find_slot(key);
        return s ? &s->value : nullptr;
    }

    // `key` must be absent. Grows (moving every slot) past 3/4 full.
    Value* insert(std::uint64_t key, Value value) { return &insert_slot(key, std::move(value))->value; }
    Slot* insert_slot(std::uint64_t key, Value value) {
        if ((size_ + 1) * 4 > slots_.size() * 3) grow();
        std::size_t i = home(key);
        while (slots_[i].used) i = (i + 1) & mask_;
        Slot& s = slots_[i];
        s.key = key;
        s.used = true;
        s.value = std::move(value);
        ++size_;
        return &s;
    }

    // Removes `key` if present. Later slots of its probe run shift back into the
    // hole, so lookups never need tombstones.
    void erase(std::uint64_t key) {
        if (size_ == 0) return;
        std::size_t hole = home(key);
        while (true) {
            if (!slots_[hole].used) return;
            if (slots_[hole].key == key) break;
            hole = (hole + 1) & mask_;
        }
        for (std::size_t j = (hole + 1) & mask_; slots_[j].used; j = (j + 1) & mask_) {
            // Slot j may fill the hole unless its home lies cyclically in (hole, j].
            const std::size_t h = home(slots_[j].key);
            if (((j - h) & mask_) >= ((j - hole) & mask_)) {
                slots_[hole] = std::move(slots_[j]);
                hole = j;
            }
        }
        slots_[hole] = Slot{};
        --size_;
    }

    // f(slot) for every slot in use, in no particular order.
    template <class F>
    void for_each_slot(F&& f) {
        for (Slot& s : slots_)
            if (s.used) f(s);
    }
    // f(slot) for the slots in use among at most `count` slots from index `begin`
    // (an inspection in bounded steps). Returns {the index to continue from, the
    // slots examined}; the index is capacity() once the end is reached. The
    // table never shrinks, so an index from before an insert stays in range.
    template <class F>
    std::pair<std::size_t, std::size_t> for_each_slot_from(std::size_t begin, std::size_t count, F&& f) {
        const std::size_t from = std::min(begin, slots_.size());
        const std::size_t end = from + std::min(count, slots_.size() - from);
        for (std::size_t i = from; i < end; ++i)
            if (slots_[i].used) f(slots_[i]);
        return {end, end - from};
    }
    template <class F>
    void for_each(F&& f) {
        for_each_slot([&](Slot& s) { f(s.key, s.value); });
    }

private:
    std::size_t home(std::uint64_t key) const noexcept {
        return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ULL) >> shift_);
    }

    void grow() {
        const std::size_t capacity = slots_.empty() ? 8 : slots_.size() * 2;
        std::vector<Slot> old(capacity);
        old.swap(slots_);
        mask_ = capacity - 1;
        shift_ = 64;
        for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
        for (Slot& s : old) {
            if (!s.used) continue;
            std::size_t i = home(s.key);
            while (slots_[i].used) i = (i + 1) & mask_;
            slots_[i] = std::move(s);
        }
    }

    std::vector<Slot> slots_;  // capacity is 0 or a power of two
    std::size_t size_ = 0;
    std::size_t mask_ = 0;
    unsigned shift_ = 64;  // 64 - log2(capacity)
};

}  // namespace sluice::limit::detail
