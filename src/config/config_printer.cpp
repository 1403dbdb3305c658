// Config -> YAML (config_printer.hpp). Written with yaml-cpp's emitter, so quoting is right for
// any value the loader accepted; the order of keys follows docs/configuration.md.

#include "sluice/config/config_printer.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <yaml-cpp/emitter.h>
#include <yaml-cpp/emittermanip.h>

#include "sluice/config/vendor_policy.hpp"

namespace sluice::config {
namespace {

std::string endpoint(const std::string& address, std::uint16_t port) {
    const bool v6 = address.find(':') != std::string::npos;
    return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

std::string url_of(const UpstreamConfig& upstream) {
    const bool v6 = upstream.host.find(':') != std::string::npos;
    return upstream.scheme + "://" + (v6 ? "[" + upstream.host + "]" : upstream.host) + ":" +
           std::to_string(upstream.port) + upstream.base_path;
}

const char* reset_mode_name(feedback::ResetMode mode) {
    switch (mode) {
        case feedback::ResetMode::automatic: return "auto";
        case feedback::ResetMode::delta_seconds: return "delta_seconds";
        case feedback::ResetMode::unix_seconds: return "unix_seconds";
    }
    return "auto";
}

const char* style_name(RateLimitHeaderStyle style) {
    switch (style) {
        case RateLimitHeaderStyle::none: return "none";
        case RateLimitHeaderStyle::ietf: return "ietf";
        case RateLimitHeaderStyle::x: return "x";
        case RateLimitHeaderStyle::both: return "both";
    }
    return "both";
}

const char* algorithm_name(Algorithm algorithm) {
    switch (algorithm) {
        case Algorithm::token_bucket: return "token_bucket";
        case Algorithm::sliding_window: return "sliding_window";
        case Algorithm::fixed_window: return "fixed_window";
        case Algorithm::concurrency: return "concurrency";
        case Algorithm::vendor_gate: return "vendor_gate";
    }
    return "sliding_window";
}

void flow_list(YAML::Emitter& out, const char* key, const std::vector<std::string>& items) {
    out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : items) out << item;
    out << YAML::EndSeq;
}

void print_queue(YAML::Emitter& out, const QueueConfig& queue) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "max_depth" << YAML::Value << queue.max_depth;
    out << YAML::Key << "max_wait" << YAML::Value << format_duration(queue.max_wait);
    out << YAML::EndMap;
}

void print_server(YAML::Emitter& out, const ServerConfig& server) {
    out << YAML::Key << "server" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "workers" << YAML::Value << server.workers;
    out << YAML::Key << "max_header_bytes" << YAML::Value << server.max_header_bytes;
    out << YAML::Key << "max_body_bytes" << YAML::Value << server.max_body_bytes;
    out << YAML::Key << "max_buffered_body_bytes" << YAML::Value << server.max_buffered_body_bytes;
    out << YAML::Key << "max_client_connections" << YAML::Value << server.max_client_connections;
    const auto& t = server.timeouts;
    out << YAML::Key << "timeouts" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "client_header" << YAML::Value << format_duration(t.client_header);
    out << YAML::Key << "client_body" << YAML::Value << format_duration(t.client_body);
    out << YAML::Key << "client_body_total" << YAML::Value << format_duration(t.client_body_total);
    out << YAML::Key << "client_idle" << YAML::Value << format_duration(t.client_idle);
    out << YAML::Key << "client_write" << YAML::Value << format_duration(t.client_write);
    out << YAML::EndMap;
    out << YAML::Key << "forwarded" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "x_forwarded_for" << YAML::Value << server.forwarded.x_forwarded_for;
    out << YAML::Key << "x_forwarded_proto" << YAML::Value << server.forwarded.x_forwarded_proto;
    out << YAML::EndMap;
    out << YAML::Key << "rate_limit_headers" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "style" << YAML::Value << style_name(server.rate_limit_headers.style);
    out << YAML::Key << "on_proxied" << YAML::Value << server.rate_limit_headers.on_proxied;
    out << YAML::EndMap;
    const auto& admin = server.admin;
    out << YAML::Key << "admin" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "enabled" << YAML::Value << admin.enabled;
    out << YAML::Key << "listen" << YAML::Value << YAML::DoubleQuoted << endpoint(admin.address, admin.port);
    if (!admin.token_file.empty()) {
        // The path only: the token itself is never read by --check (config.hpp, AdminConfig).
        out << YAML::Key << "token_file" << YAML::Value << admin.token_file;
    }
    if (!admin.token_env.empty()) {
        // The variable's name only, like token_file: its value is read at start.
        out << YAML::Key << "token_env" << YAML::Value << admin.token_env;
    }
    out << YAML::Key << "status_keys" << YAML::Value << admin.status_keys;
    out << YAML::Key << "limits_top_keys" << YAML::Value << admin.limits_top_keys;
    out << YAML::EndMap;
    const auto& access_log = server.access_log;
    out << YAML::Key << "access_log" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "enabled" << YAML::Value << access_log.enabled;
    out << YAML::Key << "path" << YAML::Value << YAML::DoubleQuoted << access_log.path;
    out << YAML::Key << "log_query" << YAML::Value << access_log.log_query;
    out << YAML::Key << "buffer_bytes" << YAML::Value << access_log.buffer_bytes;
    out << YAML::EndMap;
    const auto& state = server.state;
    out << YAML::Key << "state" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "backend" << YAML::Value
        << (state.backend == StateBackend::redis ? "redis" : "memory");
    if (state.backend == StateBackend::redis) {
        const auto& redis = state.redis;
        out << YAML::Key << "redis" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "address" << YAML::Value << YAML::DoubleQuoted
            << (redis.unix_path.empty() ? redis.host + ":" + std::to_string(redis.port)
                                        : "unix:" + redis.unix_path);
        out << YAML::Key << "db" << YAML::Value << redis.db;
        if (!redis.username.empty()) out << YAML::Key << "username" << YAML::Value << redis.username;
        // Where the password comes from, never the password (read at start, not by --check).
        if (!redis.password_file.empty())
            out << YAML::Key << "password_file" << YAML::Value << redis.password_file;
        if (!redis.password_env.empty())
            out << YAML::Key << "password_env" << YAML::Value << redis.password_env;
        out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "enabled" << YAML::Value << redis.tls;
        if (redis.tls) {
            out << YAML::Key << "ca_file" << YAML::Value << YAML::DoubleQuoted << redis.tls_ca_file;
            out << YAML::Key << "server_name" << YAML::Value << YAML::DoubleQuoted << redis.tls_server_name;
            out << YAML::Key << "verify" << YAML::Value << redis.tls_verify;
        }
        out << YAML::EndMap;
        out << YAML::Key << "key_prefix" << YAML::Value << redis.key_prefix;
        out << YAML::Key << "connect_timeout" << YAML::Value << format_duration(redis.connect_timeout);
        out << YAML::Key << "command_timeout" << YAML::Value << format_duration(redis.command_timeout);
        out << YAML::Key << "replicas" << YAML::Value << redis.replicas;
        out << YAML::Key << "lease" << YAML::Value << format_duration(redis.lease);
        out << YAML::EndMap;
    }
    out << YAML::Key << "enabled" << YAML::Value << state.enabled;
    out << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << state.dir;
    out << YAML::Key << "save_interval" << YAML::Value << format_duration(state.save_interval);
    out << YAML::Key << "min_window" << YAML::Value << format_duration(state.min_window);
    out << YAML::EndMap;
    out << YAML::Key << "drain_timeout" << YAML::Value << format_duration(server.drain_timeout);
    out << YAML::EndMap;
}

void print_upstream(YAML::Emitter& out, const UpstreamConfig& upstream) {
    out << YAML::Key << upstream.name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "url" << YAML::Value << url_of(upstream);
    if (upstream.scheme == "https") {
        out << YAML::Key << "tls" << YAML::Value << YAML::Flow << YAML::BeginMap;
        out << YAML::Key << "verify" << YAML::Value << upstream.tls.verify;
        if (!upstream.tls.ca_file.empty())
            out << YAML::Key << "ca_file" << YAML::Value << upstream.tls.ca_file;
        if (!upstream.tls.server_name.empty())
            out << YAML::Key << "server_name" << YAML::Value << upstream.tls.server_name;
        out << YAML::EndMap;
    }
    out << YAML::Key << "max_connections" << YAML::Value << upstream.max_connections;
    out << YAML::Key << "max_idle_connections" << YAML::Value << upstream.max_idle_connections;
    out << YAML::Key << "max_streamed_bodies" << YAML::Value << upstream.max_streamed_bodies;
    out << YAML::Key << "idle_timeout" << YAML::Value << format_duration(upstream.idle_timeout);
    out << YAML::Key << "connect_timeout" << YAML::Value << format_duration(upstream.connect_timeout);
    out << YAML::Key << "response_timeout" << YAML::Value << format_duration(upstream.response_timeout);
    out << YAML::Key << "body_timeout" << YAML::Value << format_duration(upstream.body_timeout);
    const auto& f = upstream.feedback;
    out << YAML::Key << "feedback" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "enabled" << YAML::Value << f.enabled;
    out << YAML::Key << "pause_on_429" << YAML::Value << f.pause_on_429;
    out << YAML::Key << "cap_from_remaining" << YAML::Value << f.cap_from_remaining;
    out << YAML::Key << "learn" << YAML::Value << f.learn;
    out << YAML::Key << "reset_mode" << YAML::Value << reset_mode_name(f.signals.reset_mode);
    if (!f.signals.body_field.empty())
        out << YAML::Key << "body_field" << YAML::Value << f.signals.body_field;
    out << YAML::Key << "body_field_mode" << YAML::Value << reset_mode_name(f.signals.body_field_mode);
    if (!f.signals.limit_type_field.empty())
        out << YAML::Key << "limit_type_field" << YAML::Value << f.signals.limit_type_field;
    out << YAML::Key << "max_pause" << YAML::Value << format_duration(f.signals.max_pause);
    out << YAML::Key << "default_pause" << YAML::Value << format_duration(f.default_pause);
    out << YAML::EndMap;
    out << YAML::EndMap;
}

// A group file is named, never copied (it holds API keys). Groups written inline keep their names
// and lose their values: the printed file loads, with every value unmapped, and says so.
void print_group_by(YAML::Emitter& out, const KeyGroups& groups) {
    out << YAML::Key << "group_by" << YAML::Value << YAML::BeginMap;
    if (!groups.source.empty()) {
        out << YAML::Key << "file" << YAML::Value << groups.source;
    } else {
        std::vector<std::string> names;
        for (const auto& [value, group] : groups.group_of) names.push_back(group);
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        out << YAML::Key << "groups" << YAML::Value << YAML::BeginMap;
        for (const auto& name : names)
            out << YAML::Key << name << YAML::Value << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        out << YAML::EndMap;
    }
    out << YAML::Key << "unmapped" << YAML::Value
        << (groups.unmapped == KeyGroups::Unmapped::own ? "own" : "shared");
    out << YAML::EndMap;
}

// cost.body and cost.settle.body: {array_length|number: "/POINTER", max_bytes: N}.
void print_body_cost(YAML::Emitter& out, const BodyCostConfig& body) {
    out << YAML::BeginMap;
    out << YAML::Key << (body.kind == cost::BodyCostKind::array_length ? "array_length" : "number")
        << YAML::Value << YAML::DoubleQuoted << cost::format_json_pointer(body.pointer);
    // Unset (0): the server's max_buffered_body_bytes applies, printed there.
    if (body.max_bytes > 0) out << YAML::Key << "max_bytes" << YAML::Value << body.max_bytes;
    out << YAML::EndMap;
}

void print_limit(YAML::Emitter& out, const LimitConfig& limit, const PriorityConfig& priorities) {
    out << YAML::Key << limit.name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "algorithm" << YAML::Value << algorithm_name(limit.algorithm);
    out << YAML::Key << "limit" << YAML::Value << limit.limit;
    if (limit.algorithm != Algorithm::concurrency) {
        out << YAML::Key << "window" << YAML::Value << format_duration(limit.window);
        if (limit.algorithm == Algorithm::token_bucket)
            out << YAML::Key << "burst" << YAML::Value << limit.burst;
        if (limit.algorithm == Algorithm::fixed_window) {
            if (limit.time_zone.empty()) {
                out << YAML::Key << "utc_offset" << YAML::Value << format_duration(limit.utc_offset);
            } else {
                out << YAML::Key << "time_zone" << YAML::Value << limit.time_zone;
            }
        }
        out << YAML::Key << "margin" << YAML::Value << format_duration(limit.margin);
    }
    if (!limit.key.empty()) {
        out << YAML::Key << "key" << YAML::Value << YAML::Flow << YAML::BeginSeq;
        for (const auto& source : limit.key) {
            if (source.kind == KeySource::Kind::method) {
                out << "method";
                continue;
            }
            out << YAML::BeginMap << YAML::Key
                << (source.kind == KeySource::Kind::header  ? "header"
                    : source.kind == KeySource::Kind::query ? "query"
                                                            : "path_param")
                << YAML::Value << source.name;
            if (const auto& groups = source.group_by) print_group_by(out, *groups);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
    }
    if (!limit.cost.header.empty() || limit.cost.body || limit.cost.settles()) {
        out << YAML::Key << "cost" << YAML::Value << YAML::Flow << YAML::BeginMap;
        if (const auto& body = limit.cost.body) {
            out << YAML::Key << "body" << YAML::Value;
            print_body_cost(out, *body);
        } else if (!limit.cost.header.empty()) {
            out << YAML::Key << "header" << YAML::Value << limit.cost.header;
        }
        if (!limit.cost.body) out << YAML::Key << "default" << YAML::Value << limit.cost.fixed;
        out << YAML::Key << "max" << YAML::Value << limit.cost.max;
        if (!limit.cost.settle_header.empty()) {
            out << YAML::Key << "settle" << YAML::Value << YAML::BeginMap << YAML::Key << "header"
                << YAML::Value << limit.cost.settle_header << YAML::EndMap;
        } else if (const auto& body = limit.cost.settle_body) {
            out << YAML::Key << "settle" << YAML::Value << YAML::BeginMap << YAML::Key << "body"
                << YAML::Value;
            print_body_cost(out, *body);
            out << YAML::EndMap;
        }
        out << YAML::EndMap;
    } else {
        out << YAML::Key << "cost" << YAML::Value << limit.cost.fixed;
    }
    out << YAML::Key << "enforce" << YAML::Value << limit.enforce;
    if (limit.on_redis_failure != RedisFailurePolicy::local) {
        out << YAML::Key << "on_redis_failure" << YAML::Value
            << (limit.on_redis_failure == RedisFailurePolicy::deny ? "deny" : "allow");
    }
    out << YAML::Key << "max_keys" << YAML::Value << limit.max_keys;
    if (limit.feedback.vendor_limit || !limit.feedback.vendor_limit_type.empty()) {
        out << YAML::Key << "feedback" << YAML::Value << YAML::Flow << YAML::BeginMap;
        if (limit.feedback.vendor_limit)
            out << YAML::Key << "vendor_limit" << YAML::Value << *limit.feedback.vendor_limit;
        if (!limit.feedback.vendor_limit_type.empty())
            out << YAML::Key << "vendor_limit_type" << YAML::Value << limit.feedback.vendor_limit_type;
        out << YAML::EndMap;
    }
    if (!limit.class_shares.empty()) {
        out << YAML::Key << "classes" << YAML::Value << YAML::BeginMap;
        for (const auto& share : limit.class_shares) {
            out << YAML::Key << priorities.classes[share.class_index] << YAML::Value << YAML::Flow
                << YAML::BeginMap;
            if (share.max_share)
                out << YAML::Key << "max_share" << YAML::Value << std::to_string(*share.max_share) + "%";
            if (share.reserve)
                out << YAML::Key << "reserve" << YAML::Value << std::to_string(*share.reserve) + "%";
            out << YAML::EndMap;
        }
        out << YAML::EndMap;
    }
    if (const auto& fair = limit.fair_share) {
        out << YAML::Key << "fair_share" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "caller" << YAML::Value;
        if (fair->caller == FairShareConfig::Caller::listener) {
            out << "listener";
        } else {
            out << YAML::Flow << YAML::BeginMap << YAML::Key << "header" << YAML::Value << fair->header
                << YAML::EndMap;
        }
        if (!fair->weights.empty()) {
            out << YAML::Key << "weights" << YAML::Value << YAML::Flow << YAML::BeginMap;
            for (const auto& [name, weight] : fair->weights)
                out << YAML::Key << name << YAML::Value << weight;
            out << YAML::EndMap;
        }
        out << YAML::Key << "default_weight" << YAML::Value << fair->default_weight;
        out << YAML::EndMap;
    }
    out << YAML::EndMap;
}

void print_priorities(YAML::Emitter& out, const PriorityConfig& priorities) {
    out << YAML::Key << "priorities" << YAML::Value << YAML::BeginMap;
    flow_list(out, "classes", priorities.classes);
    out << YAML::Key << "default" << YAML::Value << priorities.classes[priorities.default_class];
    out << YAML::Key << "aging" << YAML::Value << format_duration(priorities.aging);
    out << YAML::EndMap;
}

void print_route(YAML::Emitter& out, const RouteConfig& route, const PriorityConfig& priorities) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << route.name;
    const auto& m = route.match;
    out << YAML::Key << "match" << YAML::Value << YAML::Flow << YAML::BeginMap;
    if (!m.listeners.empty()) flow_list(out, "listener", m.listeners);
    if (!m.hosts.empty()) flow_list(out, "host", m.hosts);
    if (!m.methods.empty()) flow_list(out, "methods", m.methods);
    if (!m.path_prefix.empty()) out << YAML::Key << "path_prefix" << YAML::Value << m.path_prefix;
    if (!m.path.empty()) out << YAML::Key << "path" << YAML::Value << m.path;
    out << YAML::EndMap;
    if (route.strip_prefix) out << YAML::Key << "strip_prefix" << YAML::Value << true;
    out << YAML::Key << "upstream" << YAML::Value << route.upstream;
    flow_list(out, "limits", route.limits);
    out << YAML::Key << "queue" << YAML::Value;
    print_queue(out, route.queue);
    out << YAML::Key << "retry" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "on_vendor_429" << YAML::Value << route.retry.on_vendor_429;
    out << YAML::Key << "non_idempotent" << YAML::Value << route.retry.non_idempotent;
    out << YAML::Key << "max_attempts" << YAML::Value << route.retry.max_attempts;
    out << YAML::EndMap;
    if (route.priority) out << YAML::Key << "priority" << YAML::Value << priorities.classes[*route.priority];
    out << YAML::EndMap;
}

}  // namespace

std::string format_duration(Duration duration) {
    const auto ns = duration.count();
    if (ns == 0) return "0s";
    struct Unit {
        Duration::rep size;
        const char* name;
    };
    for (const auto& unit :
         {Unit{86'400'000'000'000, "d"}, Unit{3'600'000'000'000, "h"}, Unit{60'000'000'000, "m"},
          Unit{1'000'000'000, "s"}, Unit{1'000'000, "ms"}, Unit{1'000, "us"}}) {
        if (ns % unit.size == 0) return std::to_string(ns / unit.size) + unit.name;
    }
    return std::to_string(ns) + "ns";
}

std::string print_config(const Config& config) {
    std::string header = "# The effective configuration of " + config.source_file +
                         ": presets expanded, defaults written out.\n"
                         "# Printed by sluice --check --print; sluice loads it back as it is.\n";
    if (config.time_scale != 1.0) {
        header += "# Windows, margins and offsets are divided by --time-scale " +
                  std::to_string(config.time_scale) + " (tests and demos only).\n";
    }
    for (const auto& vendor : config.vendors) {
        header += "# vendors." + vendor.name + ": preset " + vendor.preset + " (" + vendor.preset_file + ")" +
                  (vendor.tier.empty() ? "" : ", tier " + vendor.tier) + "\n";
    }
    YAML::Emitter out;
    out.SetIndent(2);
    out << YAML::BeginMap;
    print_server(out, config.server);
    out << YAML::Key << "listeners" << YAML::Value << YAML::BeginSeq;
    for (const auto& listener : config.listeners) {
        out << YAML::Flow << YAML::BeginMap;
        out << YAML::Key << "name" << YAML::Value << listener.name;
        out << YAML::Key << "listen" << YAML::Value << YAML::DoubleQuoted
            << endpoint(listener.address, listener.port);
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;
    out << YAML::Key << "upstreams" << YAML::Value << YAML::BeginMap;
    for (const auto& upstream : config.upstreams) print_upstream(out, upstream);
    out << YAML::EndMap;
    if (config.priorities.enabled()) print_priorities(out, config.priorities);
    if (!config.limits.empty()) {
        out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
        // A cap's or a reserve's own limit is derived again from its parent's `classes` at load.
        for (const auto& limit : config.limits) {
            if (!limit.derived_from) print_limit(out, limit, config.priorities);
        }
        out << YAML::EndMap;
    }
    out << YAML::Key << "queue" << YAML::Value;
    print_queue(out, config.queue_defaults);
    out << YAML::Key << "routes" << YAML::Value << YAML::BeginSeq;
    for (const auto& route : config.routes) print_route(out, route, config.priorities);
    out << YAML::EndSeq;
    out << YAML::EndMap;
    return header + out.c_str() + "\n";
}

}  // namespace sluice::config
