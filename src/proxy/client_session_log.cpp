// ClientSession's part in the access log (proxy/access_log.hpp): the request's facts
// collected into one RequestRecord as it goes, and its line written when it ends, on
// every path (relayed, synthetic answer, client or upstream failure, client gone).
// Kept apart from client_session.cpp, which calls these at those points only when the
// log is on, so that with the log off nothing here runs.

#include <chrono>

#include "sluice/access_log/line_format.hpp"
#include "sluice/proxy/client_session.hpp"
#include "sluice/proxy/upstream_request.hpp"

namespace sluice::proxy {

namespace {

constexpr std::chrono::steady_clock::time_point kUnset{};

}  // namespace

void ClientSession::begin_record() {
    // Field by field: the strings keep their capacity (no allocation per request), and
    // bytes_in counts from the first byte of this request's header, since do_read_header.
    record_.route.reset();
    record_.priority = {};
    record_.caller.clear();
    record_.has_caller = false;
    record_.method = {};
    record_.host = {};
    record_.path = {};
    record_.query.clear();
    record_.status = 0;
    record_.answered_by.clear();
    record_.queue_wait = Nanos::zero();
    record_.upstream_time.reset();
    record_.bytes_out = 0;
    record_.attempts = 0;
    record_.delayed_by_count = 0;
    record_.complete = false;
    record_.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    queued_at_ = kUnset;
    sent_at_ = kUnset;
    record_open_ = true;
}

void ClientSession::note_request(const RequestIntake& intake) {
    record_.method = method_;
    record_.host = host_;
    record_.path = path_;
    if (access_log_->options().log_query) record_.query.assign(intake.query);
    if (intake.match) record_.route = config().routes[intake.match->route_index].name;
}

void ClientSession::note_class(const limit::UseMarks& marks) {
    const auto& classes = config().priorities.classes;
    if (priority_class_ < classes.size()) record_.priority = classes[priority_class_];
    if (!marks.fair_use) return;
    record_.caller.assign(marks.fair_caller_name);
    record_.has_caller = true;
}

void ClientSession::note_queued(const queue::Admission& admission) {
    queued_at_ = std::chrono::steady_clock::now();
    if (admission.limiting_limit)
        record_.add_delayed_by(runtime_->limit_config(*admission.limiting_limit).name);
}

void ClientSession::note_admission(const queue::Admission& admission) {
    if (queued_at_ != kUnset) {
        record_.queue_wait += std::chrono::steady_clock::now() - queued_at_;
        queued_at_ = kUnset;
    }
    // The limit that refused it: the one that kept it from going, however long it waited.
    if (admission.outcome == queue::Outcome::rejected && admission.limiting_limit)
        record_.add_delayed_by(runtime_->limit_config(*admission.limiting_limit).name);
}

void ClientSession::note_sent() {
    ++record_.attempts;
    sent_at_ = std::chrono::steady_clock::now();
}

void ClientSession::note_answered() {
    if (sent_at_ == kUnset) return;
    record_.upstream_time =
        record_.upstream_time.value_or(Nanos::zero()) + (std::chrono::steady_clock::now() - sent_at_);
    sent_at_ = kUnset;
}

void ClientSession::note_synthetic(const SyntheticResponse& response) {
    record_.status = response.result_int();
    const auto code = response.find(kSluiceErrorHeader);
    record_.answered_by.assign(code != response.end() ? std::string_view(code->value()) : "sluice");
}

void ClientSession::end_record(bool complete) noexcept {
    if (!record_open_) return;
    record_open_ = false;
    try {
        // A wait or a send still under way ends here (the client left, the vendor failed).
        if (queued_at_ != kUnset) {
            record_.queue_wait += std::chrono::steady_clock::now() - queued_at_;
            queued_at_ = kUnset;
        }
        note_answered();
        record_.complete = complete && record_.status != 0;
        log_line_.clear();
        access_log::append_line(record_, access_log_->options(), log_line_);
        access_log_->append(log_line_);
    } catch (...) {
        // Out of memory while formatting: the line is lost, the request is not.
    }
}

}  // namespace sluice::proxy
