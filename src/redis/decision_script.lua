-- sluice's shared limit decisions (issue 14): one script for every operation, so that
-- a request's limits are decided and consumed in one atomic step on the Redis side.
-- The semantics are those of the in-memory limiters (src/limit/*.cpp), in microseconds:
-- the C++ side (src/redis/decision_script.cpp) rounds every duration it passes so that
-- nothing is ever admitted earlier than the in-memory limiter would admit it.
--
-- KEYS[1]        {prefix}:seq, the counter that makes sliding log members unique
-- KEYS[2 + 2i]   use i's state key    {prefix}:l:<limit>:<tag>:<key hex>
-- KEYS[3 + 2i]   use i's overlay key  ...:o (vendor pause and cap: paused_until, cause, cap_left,
--                cap_until; a sliding log's lump: lump_units, lump_at)
-- ARGV[1] op: acquire | peek | release | renew | pause | cap | record | refund
-- ARGV[2] clock override in us (0: redis TIME; a test hook)
-- ARGV[3] the number of uses n
-- ARGV[4], ARGV[5] the op's arguments: acquire/renew: lease us, lease id; release: -, lease id;
--         pause: delay us, cause; cap: remaining, reset delay us; refund: date slack us, -
-- ARGV[7 + 9i ..] use i: tag, limit, span us, burst, margin us, offset us, cost, enforce, age us
--   tag: s sliding log, b sliding buckets, t token bucket, f fixed window, c concurrency, g vendor gate
--
-- acquire/peek answer {allowed, limiting index (0-based, -1 none), {use 0}, {use 1}, ...}, each use
-- {allowed, predictable, earliest delay us, limit, remaining, reset delay us} (-1: never).
-- The other ops answer the number of uses they changed (refund: the uses that gave anything back).
--
-- Numbers are Lua doubles: every integer stays below 2^53 (times in us are ~2^51; a token
-- bucket's scaled debt is below (burst + cost) * period in us, so burst * window up to ~2^52 us
-- stays exact: 100 000 tokens per day). Integers are written with string.format('%d')
-- (tostring would print 1.7e+15).

local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == 0 then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local uses = tonumber(ARGV[3])
local FIELDS = 9
local NEVER = math.huge
local SLIDING_BUCKETS = 256
local EXACT_WAVES = 1024
local KEY_GRACE_MS = 1000 -- an idle key outlives what it counts by this much
local MAX_DEBT_US = 315360000000000 -- ten years: a shadow token bucket's debt stops growing here

local function int(x)
    return string.format('%d', x)
end

-- Floor division for a positive divisor, exact for integers below 2^53 (the double quotient
-- may be one off near an integer).
local function fdiv(a, b)
    local q = math.floor(a / b)
    if q * b > a then
        q = q - 1
    elseif (q + 1) * b <= a then
        q = q + 1
    end
    return q
end

local function cdiv(a, b)
    return -fdiv(-a, b)
end

-- A key lives until `until_us` (absolute), plus the grace.
local function expire_at(key, until_us)
    local ms = cdiv(math.max(until_us - now, 0), 1000) + KEY_GRACE_MS
    redis.call('PEXPIRE', key, int(ms))
end

local TAGS = { s = true, b = true, t = true, f = true, c = true, g = true }

local function use_of(i)
    local b = 7 + FIELDS * i
    if not TAGS[ARGV[b]] or not KEYS[3 + 2 * i] then
        error('sluice decision script: use ' .. i .. ' is malformed (tag ' .. tostring(ARGV[b]) .. ')')
    end
    return {
        index = i,
        tag = ARGV[b],
        limit = tonumber(ARGV[b + 1]),
        span = tonumber(ARGV[b + 2]),
        burst = tonumber(ARGV[b + 3]),
        margin = tonumber(ARGV[b + 4]),
        offset = tonumber(ARGV[b + 5]),
        cost = tonumber(ARGV[b + 6]),
        enforce = ARGV[b + 7] == '1',
        age = tonumber(ARGV[b + 8]),
        key = KEYS[2 + 2 * i],
        overlay = KEYS[3 + 2 * i],
    }
end

---------------------------------------------------------------------------------------------
-- Sliding window, exact log: one ZSET member per unit, scored by its admission time. A unit
-- admitted at s counts at t iff t - D < s <= t. The ZSET holds at most `limit` units: beyond
-- (a shadow limit, or units recorded after a fallback) the oldest are folded into a lump counted
-- as admitted at the newest of them (held longer, never shorter), as memory does; the lump is
-- kept in the overlay hash (lump_units, lump_at), a key the script already names.

local function log_newest(u)
    local last = redis.call('ZRANGE', u.key, -1, -1, 'WITHSCORES')
    if #last == 0 then return nil end
    return tonumber(last[2])
end

-- The lump's units and time, while it still counts.
local function log_lump(u)
    local l = redis.call('HMGET', u.overlay, 'lump_units', 'lump_at')
    local units, at = tonumber(l[1]) or 0, tonumber(l[2]) or 0
    if units <= 0 or at <= now - u.span then return 0, 0 end
    return units, at
end

local function log_view(u, units)
    local lim, D = u.limit, u.span
    local cutoff = now - D
    local lump, lump_at = log_lump(u)
    local size = tonumber(redis.call('ZCOUNT', u.key, '(' .. int(cutoff), '+inf'))
    local count = lump + size
    local newest = size > 0 and log_newest(u) or (lump > 0 and lump_at or nil)
    local v = { allowed = count + units <= lim, earliest = now, remaining = lim - count, reset = now }
    if count > 0 then v.reset = newest + D end
    if not v.allowed then
        if lim <= 0 then
            v.earliest = NEVER
        else
            -- As in memory: the last of `units` goes `hops` windows after the `first`-th unit
            -- counted now (1-based), or hops - 1 windows after a unit admitted now.
            local hops = cdiv(units, lim)
            local first = count + units - hops * lim
            local base, windows = nil, hops
            if first <= 0 then
                base = math.max(now, newest or now)
                windows = hops - 1
            elseif first <= lump then
                base = lump_at
            else
                local at = redis.call('ZRANGEBYSCORE', u.key, '(' .. int(cutoff), '+inf', 'WITHSCORES', 'LIMIT',
                    first - lump - 1, 1)
                base = tonumber(at[2])
            end
            v.earliest = base + windows * D
        end
    end
    return v
end

-- Records `units` at `at` (no older than anything held: the caller makes sure); past `limit`
-- units in the ZSET, the oldest are folded into the lump.
local function log_add(u, units, at)
    redis.call('ZREMRANGEBYSCORE', u.key, '-inf', int(now - u.span))
    if units <= 0 then return end
    local lump, lump_at = log_lump(u)
    local size = tonumber(redis.call('ZCARD', u.key))
    local excess = size + units - math.max(u.limit, 0)
    if excess > 0 then
        local from_set = math.min(excess, size)
        if from_set > 0 then
            local last = redis.call('ZRANGE', u.key, from_set - 1, from_set - 1, 'WITHSCORES')
            lump_at = math.max(lump_at, tonumber(last[2]))
            redis.call('ZREMRANGEBYRANK', u.key, 0, from_set - 1)
            lump = lump + from_set
        end
        local from_new = excess - from_set
        if from_new > 0 then
            lump, lump_at = lump + from_new, at
            units = units - from_new
        end
        redis.call('HSET', u.overlay, 'lump_units', int(lump), 'lump_at', int(lump_at))
    end
    if units > 0 then
        local last = redis.call('INCRBY', KEYS[1], units)
        local args = {}
        for j = 1, units do
            args[#args + 1] = int(at)
            args[#args + 1] = int(last - units + j)
            if #args >= 200 or j == units then
                redis.call('ZADD', u.key, unpack(args))
                args = {}
            end
        end
        expire_at(u.key, at + u.span)
    end
end

-- In time order, as memory records: never older than the newest unit held.
local function log_in_order(u, at)
    local lump, lump_at = log_lump(u)
    local newest = log_newest(u)
    if newest and newest > now - u.span then at = math.max(at, newest) end
    if lump > 0 then at = math.max(at, lump_at) end
    return at
end

local function log_consume(u, cost)
    log_add(u, cost, log_in_order(u, now))
end

local function log_record(u, units, at)
    if units <= 0 or at <= now - u.span then return end
    log_add(u, units, log_in_order(u, at))
end

-- Up to `units` of the oldest units logged at or after `at` leave the log. The store cannot
-- tell a request's own units from others': the request's were logged after `at` (its local
-- admission, before it asked), so those taken are its own or older ones, which leave the window
-- no later than its own would have: the count at any time to come is never below what it would
-- be without the admission. Units folded into the lump are not given back (as in memory); and
-- while a lump dated at or after `at` counts, the request's units may be in it, the ones logged
-- after them newer than its own: nothing goes.
local function log_refund(u, units, at)
    redis.call('ZREMRANGEBYSCORE', u.key, '-inf', int(now - u.span))
    if units <= 0 or at <= now - u.span then return false end
    local lump, lump_at = log_lump(u)
    if lump > 0 and lump_at >= at then return false end
    local oldest = redis.call('ZRANGEBYSCORE', u.key, int(at), '+inf', 'LIMIT', 0, int(units))
    if #oldest == 0 then return false end
    redis.call('ZREM', u.key, unpack(oldest)) -- at most `limit` members: the log holds no more
    return true
end

---------------------------------------------------------------------------------------------
-- Sliding window, bucket ring: a HASH of bucket -> units, bucket b = [b*g, (b+1)*g), with
-- g = ceil(D / 255); a bucket counts until its newest possible unit has left the window.

local function bucket_width(u)
    return cdiv(u.span, SLIDING_BUCKETS - 1)
end

-- The first us at which bucket b no longer counts: its newest possible unit (in memory's ns,
-- (b + 1) * g us - 1 ns) has left the window, rounded up to the us, so that a ring decides at
-- each us exactly as memory's does at that us.
local function bucket_expiry(u, g, b)
    return (b + 1) * g + u.span
end

-- The buckets still counted (in no order: only a refusal needs them sorted), every expired
-- field (to be deleted), their total and the newest bucket. Read once per key and call: an
-- acquire reads a key to decide and again to consume, and a ring holds up to 256 fields.
local bucket_cache = {}
local function buckets_of(u, g)
    local cached = bucket_cache[u.key]
    if cached then return cached[1], cached[2], cached[3], cached[4] end
    local flat = redis.call('HGETALL', u.key)
    local oldest = fdiv(now - u.span, g) -- bucket_expiry(oldest) > now
    local live, stale, total, newest = {}, {}, 0, nil
    for j = 1, #flat, 2 do
        local b, c = tonumber(flat[j]), tonumber(flat[j + 1])
        if b >= oldest then
            live[#live + 1] = { b, c }
            total = total + c
            if not newest or b > newest then newest = b end
        else
            stale[#stale + 1] = flat[j]
        end
    end
    bucket_cache[u.key] = { live, stale, total, newest }
    return live, stale, total, newest
end

local function buckets_view(u, units)
    local lim, D = u.limit, u.span
    local g = bucket_width(u)
    local live, _, total, head = buckets_of(u, g)
    local v = { allowed = total + units <= lim, earliest = now, remaining = lim - total, reset = now }
    if total > 0 then v.reset = bucket_expiry(u, g, head) end
    if not v.allowed then
        if lim <= 0 then
            v.earliest = NEVER
        else
            local hops = cdiv(units, lim)
            local first = total + units - hops * lim
            local waves = hops - 1
            local leaves
            if first >= 1 then
                table.sort(live, function(x, y) return x[1] < y[1] end)
                local freed, b = 0, head
                for j = 1, #live do
                    freed = freed + live[j][2]
                    b = live[j][1]
                    if freed >= first then break end
                end
                leaves = bucket_expiry(u, g, b)
            else
                leaves = bucket_expiry(u, g, math.max(fdiv(now, g), head or fdiv(now, g)))
                waves = hops - 2
            end
            local exact = math.min(waves, EXACT_WAVES)
            for _ = 1, exact do -- a unit admitted as the last one leaves (memory: 1 ns before `leaves`)
                leaves = bucket_expiry(u, g, fdiv(leaves - 1, g))
            end
            v.earliest = leaves + (waves - exact) * D
        end
    end
    return v
end

local function buckets_add(u, units, at, in_order)
    local g = bucket_width(u)
    local _, stale, _, newest = buckets_of(u, g)
    bucket_cache[u.key] = nil -- written below: read again if asked again in this call
    if #stale > 0 then redis.call('HDEL', u.key, unpack(stale)) end
    if units <= 0 then return end
    local b = fdiv(at, g)
    -- An admission goes into the newest bucket if that is later (held longer: conservative).
    if in_order and newest then b = math.max(b, newest) end
    if bucket_expiry(u, g, b) <= now then return end
    redis.call('HINCRBY', u.key, int(b), int(units))
    local head = b
    if newest then head = math.max(head, newest) end
    expire_at(u.key, bucket_expiry(u, g, head))
end

-- Up to `units` leave the buckets from that of `at` on, oldest first, at most what each holds
-- (as the log: the request's own bucket or older ones); nothing once the bucket of `at` has
-- expired. An emptied bucket stays, at 0, as memory's head does: it still dates the reset and
-- takes the next admission in order.
local function buckets_refund(u, units, at)
    local g = bucket_width(u)
    local live, stale = buckets_of(u, g)
    bucket_cache[u.key] = nil -- written below
    if #stale > 0 then redis.call('HDEL', u.key, unpack(stale)) end
    local from = fdiv(at, g)
    if units <= 0 or bucket_expiry(u, g, from) <= now then return false end
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local left = units
    for j = 1, #live do
        if left <= 0 then break end
        local b, c = live[j][1], live[j][2]
        if b >= from and c > 0 then
            local take = math.min(c, left)
            left = left - take
            redis.call('HINCRBY', u.key, int(b), int(-take))
        end
    end
    return left < units
end

---------------------------------------------------------------------------------------------
-- Token bucket (GCRA): the TAT as "us:frac", TAT = us + frac / r (frac in [0, r)), so that
-- one token is exactly P / r us and every step is exact integer arithmetic, as in memory
-- (which keeps the TAT in 1/r ns). r = limit per period P = window + margin.

local function tat_of(u)
    local raw = redis.call('GET', u.key)
    if not raw then return 0, 0 end
    local a, f = string.match(raw, '^(-?%d+):(%d+)$')
    if not a then return 0, 0 end
    return tonumber(a), tonumber(f)
end

-- max(TAT, now) as (us, frac).
local function tat_from_now(a, f)
    if a > now or (a == now and f > 0) then return a, f end
    return now, 0
end

local function token_view(u, units)
    local r, P, burst = math.max(u.limit, 1), u.span, u.burst
    local a, f = tat_of(u)
    local xa, xf = tat_from_now(a, f)
    -- max(TAT, now) + (units - burst) * P / r - now, in 1/r us
    local d = (xa - now) * r + xf + (units - burst) * P
    local v = { allowed = d <= 0, earliest = now, remaining = burst, reset = now }
    if not v.allowed then v.earliest = now + cdiv(d, r) end
    if xa ~= now or xf ~= 0 then
        local owed = cdiv((xa - now) * r + xf, P)
        v.remaining = owed >= burst and 0 or burst - owed
        v.reset = xa + (xf > 0 and 1 or 0)
    end
    return v
end

local function token_add(u, units, at)
    local r, P = math.max(u.limit, 1), u.span
    local a, f = tat_of(u)
    local xa, xf = a, f
    if at > a or (at == a and f == 0) then xa, xf = at, 0 end
    local total = xf + units * P
    local whole = fdiv(total, r)
    xa, xf = xa + whole, total - whole * r
    if xa > now + MAX_DEBT_US then xa = now + MAX_DEBT_US end
    if xa < now or (xa == now and xf == 0) then return end -- nothing owed: a full bucket
    redis.call('SET', u.key, int(xa) .. ':' .. int(xf))
    expire_at(u.key, xa + 1)
end

-- As memory's refund: the TAT moves back by `units` tokens less what has refilled in the `age`
-- since the admission (a later admission may have found the bucket full without this one, and
-- only the elapsed time bounds what that absorbed), never past a full bucket. An older `age`
-- gives back less.
local function token_refund(u, units, age)
    local r, P = math.max(u.limit, 1), u.span
    if units <= 0 or age >= cdiv(units * P, r) then return false end
    local a, f = tat_of(u)
    local owed = (a - now) * r + f -- in 1/r us
    if owed <= 0 then return false end
    local left = owed - (units * P - age * r)
    if left <= 0 then
        redis.call('DEL', u.key)
        return true
    end
    local whole = fdiv(left, r)
    redis.call('SET', u.key, int(now + whole) .. ':' .. int(left - whole * r))
    expire_at(u.key, now + whole + 1)
    return true
end

---------------------------------------------------------------------------------------------
-- Fixed window: window k = [k*P - O, (k+1)*P - O); a unit admitted at s counts in windows
-- idx(s - M) .. idx(s + M). A HASH of window index -> units (one key per (limit, key), so the
-- script names every key it touches, as Redis Cluster requires).

local function window_of(u, w)
    return fdiv(w + u.offset, u.span)
end

local function window_start(u, k)
    return k * u.span - u.offset
end

local function window_released(u, k)
    return window_start(u, k + 1) + u.margin
end

local function fixed_view(u, units)
    local lim = u.limit
    local lo, hi = window_of(u, now - u.margin), window_of(u, now + u.margin)
    local fields = {}
    for k = lo, hi do fields[#fields + 1] = int(k) end
    local counts = redis.call('HMGET', u.key, unpack(fields))
    local fullest, blocking, used, k_now_count = 0, nil, nil, 0
    local k_now = window_of(u, now)
    for k = lo, hi do
        local c = tonumber(counts[k - lo + 1]) or 0
        fullest = math.max(fullest, c)
        if c > 0 then used = k end
        if c + units > lim then blocking = k end
        if k == k_now then k_now_count = c end
    end
    local v = { allowed = blocking == nil, earliest = now, remaining = lim - fullest, reset = now }
    if used then v.reset = window_released(u, used) end
    if not v.allowed then
        v.earliest = window_released(u, blocking)
        local spill = units - math.max(lim - k_now_count, 0)
        if lim <= 0 then
            v.earliest = NEVER
        elseif spill > 0 then
            v.earliest = math.max(v.earliest, window_start(u, k_now + cdiv(spill, lim)))
        end
    end
    return v
end

local function fixed_add(u, units, at)
    local lo = window_of(u, now - u.margin)
    local from, to = math.max(window_of(u, at - u.margin), lo), window_of(u, at + u.margin)
    local stale = {}
    for _, field in ipairs(redis.call('HKEYS', u.key)) do
        if tonumber(field) < lo then stale[#stale + 1] = field end
    end
    if #stale > 0 then redis.call('HDEL', u.key, unpack(stale)) end
    if units <= 0 or from > to then return end
    for k = from, to do redis.call('HINCRBY', u.key, int(k), int(units)) end
    local last = to
    for _, field in ipairs(redis.call('HKEYS', u.key)) do last = math.max(last, tonumber(field)) end
    expire_at(u.key, window_released(u, last))
end

-- `units` leave each window an admission at `at` counted in that is still held, at most what
-- each holds. The request's own admission, later than `at` and no later than now, counted in
-- every one of those (from the oldest held to that of at + margin), so none is taken from a
-- window it did not count in.
local function fixed_refund(u, units, at)
    local from = math.max(window_of(u, at - u.margin), window_of(u, now - u.margin))
    local to = window_of(u, at + u.margin)
    if units <= 0 or from > to then return false end
    local fields = {}
    for k = from, to do fields[#fields + 1] = int(k) end
    local counts = redis.call('HMGET', u.key, unpack(fields))
    local given = false
    for k = from, to do
        local c = tonumber(counts[k - from + 1]) or 0
        if c > 0 then
            given = true
            if c <= units then
                redis.call('HDEL', u.key, int(k))
            else
                redis.call('HINCRBY', u.key, int(k), int(-units))
            end
        end
    end
    return given
end

---------------------------------------------------------------------------------------------
-- Concurrency: a ZSET of lease members ("<lease id>:<j>", one per unit) scored by their
-- expiry; an expired lease no longer counts (its holder died or stopped renewing).

local function concurrency_view(u, units)
    local lim = u.limit
    local count = tonumber(redis.call('ZCOUNT', u.key, '(' .. int(now), '+inf'))
    local v = { allowed = count + units <= lim, earliest = now, remaining = lim - count, reset = now }
    if count > 0 then v.reset = NEVER end
    if not v.allowed then
        v.unpredictable = true
        -- No time is known (a release may come any moment); the hint is when enough of the
        -- leases held now expire if none is renewed.
        local need = count + units - lim
        if units > lim or need > count then
            v.earliest = NEVER
        else
            local at = redis.call('ZRANGEBYSCORE', u.key, '(' .. int(now), '+inf', 'WITHSCORES', 'LIMIT',
                need - 1, 1)
            v.earliest = tonumber(at[2])
        end
    end
    return v
end

local function lease_members(u, lease_id)
    local members = {}
    for j = 1, u.cost do members[#members + 1] = lease_id .. ':' .. int(j) end
    return members
end

local function concurrency_hold(u, lease_us, lease_id, only_existing)
    redis.call('ZREMRANGEBYSCORE', u.key, '-inf', int(now))
    if u.cost <= 0 then return end
    local until_us = now + lease_us
    local args = {}
    if only_existing then args[1] = 'XX' end
    for _, m in ipairs(lease_members(u, lease_id)) do
        args[#args + 1] = int(until_us)
        args[#args + 1] = m
        if #args >= 200 then
            redis.call('ZADD', u.key, unpack(args))
            args = only_existing and { 'XX' } or {}
        end
    end
    if #args > (only_existing and 1 or 0) then redis.call('ZADD', u.key, unpack(args)) end
    if redis.call('EXISTS', u.key) == 1 then expire_at(u.key, until_us) end
end

---------------------------------------------------------------------------------------------
-- Every algorithm's view, narrowed by the vendor overlay (pause, cap) as KeyedLimiter::finish.

local function capacity(u)
    if u.tag == 't' then return u.burst end
    return u.limit
end

local function policy_view(u, units)
    local t = u.tag
    if t == 's' then return log_view(u, units) end
    if t == 'b' then return buckets_view(u, units) end
    if t == 't' then return token_view(u, units) end
    if t == 'f' then return fixed_view(u, units) end
    if t == 'c' then return concurrency_view(u, units) end
    return { allowed = true, earliest = now, remaining = u.limit, reset = now } -- 'g': the gate
end

local function overlay_of(u)
    local o = redis.call('HMGET', u.overlay, 'paused_until', 'cap_left', 'cap_until')
    return tonumber(o[1]) or 0, tonumber(o[2]) or 0, tonumber(o[3]) or 0
end

-- The overlay lives as long as its pause, its cap or a sliding log's lump.
local function overlay_expire(u)
    local paused_until, _, cap_until = overlay_of(u)
    local until_us = math.max(paused_until, cap_until)
    if u.tag == 's' then
        local lump, lump_at = log_lump(u)
        if lump > 0 then until_us = math.max(until_us, lump_at + u.span) end
    end
    if redis.call('EXISTS', u.overlay) == 1 then expire_at(u.overlay, until_us) end
end

local function decide(u)
    local units = u.cost
    local v = policy_view(u, units)
    local d = {
        allowed = v.allowed,
        predictable = not v.unpredictable,
        earliest = v.allowed and now or math.max(v.earliest, now),
        limit = capacity(u),
        remaining = math.max(v.remaining, 0),
        reset = math.max(v.reset, now),
    }
    local paused_until, cap_left, cap_until = overlay_of(u)
    if paused_until > now then
        d.allowed = false
        d.earliest = math.max(d.earliest, paused_until)
        d.remaining = 0
        d.reset = math.max(d.reset, paused_until)
    end
    if cap_until > now then
        if cap_left < d.remaining then
            d.remaining = cap_left
            d.reset = math.max(d.reset, cap_until)
        end
        if units > cap_left then
            d.allowed = false
            d.earliest = math.max(d.earliest, cap_until)
        end
    end
    if u.cost > d.limit then -- can never fit
        d.allowed = false
        d.earliest = NEVER
    end
    return d
end

local function consume(u, lease_us, lease_id)
    local t = u.tag
    if t == 's' then
        log_consume(u, u.cost)
    elseif t == 'b' then
        buckets_add(u, u.cost, now, true)
    elseif t == 't' then
        token_add(u, u.cost, now)
    elseif t == 'f' then
        fixed_add(u, u.cost, now)
    elseif t == 'c' then
        concurrency_hold(u, lease_us, lease_id, false)
    end
    local _, cap_left, cap_until = overlay_of(u)
    if cap_until > now then
        redis.call('HSET', u.overlay, 'cap_left', int(math.max(0, cap_left - u.cost)))
    end
    if t == 's' then overlay_expire(u) end
end

local function delay(at)
    if at == NEVER then return -1 end
    return at - now
end

-- The limit an answer describes: the refusing one whose earliest is latest, else the tightest
-- (the least left relative to its limit after the cost), as the admission controller picks.
local function share(d, u)
    return math.max(d.remaining - u.cost, 0) / math.max(d.limit, 1)
end

local function acquire(consume_it)
    local lease_us, lease_id = tonumber(ARGV[4]) or 0, ARGV[5] or ''
    local list, decisions, allowed = {}, {}, true
    local blocking, tightest = nil, nil
    for i = 0, uses - 1 do
        local u = use_of(i)
        local d = decide(u)
        list[i + 1], decisions[i + 1] = u, d
        if u.enforce then
            if not d.allowed then
                allowed = false
                local e = d.predictable and d.earliest or NEVER
                if not blocking or e > blocking[2] then blocking = { i, e } end
            end
            if not tightest or share(d, u) < share(decisions[tightest + 1], list[tightest + 1]) then
                tightest = i
            end
        end
    end
    if consume_it and allowed then
        for i = 1, uses do consume(list[i], lease_us, lease_id) end
    end
    local limiting = -1
    if blocking then limiting = blocking[1] elseif tightest then limiting = tightest end
    local out = { allowed and 1 or 0, limiting }
    for i = 1, uses do
        local d = decisions[i]
        out[#out + 1] = { d.allowed and 1 or 0, d.predictable and 1 or 0, delay(d.earliest), d.limit,
            d.remaining, delay(d.reset) }
    end
    return out
end


if op == 'acquire' then return acquire(true) end
if op == 'peek' then return acquire(false) end

local changed = 0
for i = 0, uses - 1 do
    local u = use_of(i)
    if op == 'release' then
        if u.tag == 'c' and u.cost > 0 then
            changed = changed + redis.call('ZREM', u.key, unpack(lease_members(u, ARGV[5])))
        end
    elseif op == 'renew' then
        if u.tag == 'c' then
            concurrency_hold(u, tonumber(ARGV[4]), ARGV[5], true)
            changed = changed + 1
        end
    elseif op == 'pause' then
        local until_us = now + tonumber(ARGV[4])
        local paused_until = overlay_of(u)
        if until_us > now and until_us > paused_until then
            redis.call('HSET', u.overlay, 'paused_until', int(until_us), 'cause', ARGV[5])
            overlay_expire(u)
            changed = changed + 1
        end
    elseif op == 'cap' then
        local remaining, reset_at = math.max(tonumber(ARGV[4]), 0), now + tonumber(ARGV[5])
        if reset_at > now then
            -- Within one vendor window the tighter report wins; a later reset is a newer window.
            local _, cap_left, cap_until = overlay_of(u)
            if cap_until > now and reset_at <= cap_until then
                redis.call('HSET', u.overlay, 'cap_left', int(math.min(cap_left, remaining)))
            else
                redis.call('HSET', u.overlay, 'cap_left', int(remaining), 'cap_until', int(reset_at))
            end
            overlay_expire(u)
            changed = changed + 1
        end
    elseif op == 'record' then
        -- Units admitted `age` ago elsewhere (a fallback): counted, never checked.
        local at = now - u.age
        local t = u.tag
        if t == 's' then
            log_record(u, u.cost, at)
            overlay_expire(u)
        elseif t == 'b' then
            buckets_add(u, u.cost, at, false)
        elseif t == 't' then
            token_add(u, u.cost, at)
        elseif t == 'f' then
            fixed_add(u, u.cost, at)
        end
        changed = changed + 1
    elseif op == 'refund' then
        -- Units admitted `age` ago that never reached the vendor (or that it charged less):
        -- given back as the in-memory refund does (Limiter::refund). Concurrency gives back by
        -- release; a gate counts nothing. The admission is dated `slack` earlier still, so that
        -- it is no later than the units it wrote here even when the refund took longer to come
        -- than its ask did (an earlier date only gives back less); for the same reason the token
        -- bucket's refill since the admission counts over age + slack (more refill, less back).
        local slack = math.max(tonumber(ARGV[4]) or 0, 0)
        local at, t, given = now - u.age - slack, u.tag, false
        if t == 's' then
            given = log_refund(u, u.cost, at)
        elseif t == 'b' then
            given = buckets_refund(u, u.cost, at)
        elseif t == 't' then
            given = token_refund(u, u.cost, u.age + slack)
        elseif t == 'f' then
            given = fixed_refund(u, u.cost, at)
        end
        if given then changed = changed + 1 end
    else
        return redis.error_reply('sluice decision script: unknown op ' .. tostring(op))
    end
end
return changed
