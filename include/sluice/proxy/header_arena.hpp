#pragma once
// Memory for the fields of the heads one client session parses. Beast's
// basic_fields allocates one node per field (name and value inline); with the
// heap that is a malloc and a free per field, several per request and response
// (docs/benchmarks.md, "Where sluice's time goes"). The session's arena hands
// out those nodes from one fixed block instead:
//
// - bump allocation; a free inside the block only counts down, and when the
//   last live allocation is freed (between exchanges: both parsers are gone)
//   the block is reused from its start;
// - bounded: what does not fit in the block comes from the heap as before, so
//   a huge head or many interim responses cost memory only while they live.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

#include <boost/beast/http/fields.hpp>

namespace sluice::proxy {

class HeaderArena {
public:
    static constexpr std::size_t kBlockSize = 4096;

    HeaderArena() = default;
    HeaderArena(const HeaderArena&) = delete;
    HeaderArena& operator=(const HeaderArena&) = delete;

    // nullptr when it does not fit: the caller takes it from the heap.
    void* allocate(std::size_t bytes, std::size_t align) noexcept {
        const std::size_t start = (used_ + align - 1) & ~(align - 1);
        if (align > alignof(std::max_align_t) || start + bytes > kBlockSize) return nullptr;
        used_ = start + bytes;
        ++live_;
        return block_.data() + start;
    }
    bool owns(const void* p) const noexcept {
        const auto* b = static_cast<const std::byte*>(p);
        return b >= block_.data() && b < block_.data() + kBlockSize;
    }
    void release() noexcept {
        if (--live_ == 0) used_ = 0;
    }

    std::size_t used() const noexcept { return used_; }
    std::size_t live() const noexcept { return live_; }

private:
    alignas(std::max_align_t) std::array<std::byte, kBlockSize> block_{};
    std::size_t used_ = 0;
    std::size_t live_ = 0;
};

// A standard allocator over a HeaderArena, falling back to the heap.
template <class T>
class ArenaAllocator {
public:
    using value_type = T;
    using propagate_on_container_copy_assignment = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;

    explicit ArenaAllocator(HeaderArena* arena) noexcept : arena_(arena) {}
    template <class U>
    ArenaAllocator(const ArenaAllocator<U>& other) noexcept : arena_(other.arena()) {}  // NOLINT: rebinding

    T* allocate(std::size_t n) {
        if (void* p = arena_->allocate(n * sizeof(T), alignof(T))) return static_cast<T*>(p);
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (arena_->owns(p)) return arena_->release();
        std::allocator<T>().deallocate(p, n);
    }

    HeaderArena* arena() const noexcept { return arena_; }
    friend bool operator==(const ArenaAllocator& a, const ArenaAllocator& b) noexcept {
        return a.arena_ == b.arena_;
    }

private:
    HeaderArena* arena_;
};

// The fields type of the heads a session parses and relays.
using ArenaFields = boost::beast::http::basic_fields<ArenaAllocator<char>>;

}  // namespace sluice::proxy
