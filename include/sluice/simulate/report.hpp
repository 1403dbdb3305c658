#pragma once
// What `sluice simulate` prints and writes (docs/simulate.md): the text summary, the JSON
// document, and a self-contained SVG plot (no external program). Pure code.

#include <cstddef>
#include <string>
#include <vector>

#include "sluice/simulate/simulator.hpp"
#include "sluice/simulate/traffic.hpp"

namespace sluice::simulate {

// An access log says what the daemon did to each request: the simulation against it, request by
// request, in outcome classes (at once: forwarded without queueing; delayed; refused with the same
// sluice code; not routed). Requests the log says too little about (no answer reached the client)
// are not compared.
struct LogComparison {
    std::size_t compared = 0;
    std::size_t same = 0;
    std::vector<std::string> differences;  // "line N: logged X, simulated Y", the first few
};
LogComparison compare_with_log(const TrafficLog& log, const SimulationResult& result);

// `log_name` names the traffic in the summary; `run_seconds` is how long the run took (0: not shown).
std::string format_summary(const std::string& log_name, const TrafficLog& log, const SimulationResult& result,
                           double run_seconds = 0);

// The summary's numbers as one JSON document; with `per_request`, every request's outcome too
// (in the log's order, with its line number).
std::string format_json(const TrafficLog& log, const SimulationResult& result, bool per_request);

// A plot of each used limit over time: the units it counted (its admitted rate per window, or
// requests in flight) against its limit, and the requests waiting on it (right axis). One panel
// per limit; a well-formed standalone SVG 1.1 document.
std::string format_svg(const SimulationResult& result, const std::string& title);

}  // namespace sluice::simulate
