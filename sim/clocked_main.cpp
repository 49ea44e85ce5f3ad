// hwloop: a Verilator main for cocotb whose clock runs in C++.
//
// cocotb's own main leaves the clock to the testbench: either a cocotb Clock (a VPI timer
// callback per edge) or an `always #5` in the design, built with --timing (Verilator's
// coroutine scheduler, about half of a small design's simulation time). This main drives the
// top-level input HWLOOP_CLOCK itself, toggling it every HWLOOP_HALF_PERIOD time units from
// time 0 (low), so the design needs no --timing. Everything else is the VPI protocol cocotb
// expects of a Verilator main, in the same order: at each time step, the timed callbacks, then
// the clock edge, then evaluation until VPI writes settle, ReadWrite, ReadOnly; then on to
// the earlier of the next clock edge and the next cocotb deadline.

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"
#include "verilated_vpi.h"

#if VM_TRACE_FST
#include <verilated_fst_c.h>
using Trace = VerilatedFstC;
static const char* const default_trace_file = "dump.fst";
#elif VM_TRACE
#include <verilated_vcd_c.h>
using Trace = VerilatedVcdC;
static const char* const default_trace_file = "dump.vcd";
#endif

#ifndef HWLOOP_CLOCK
#error "build with -DHWLOOP_CLOCK=<top-level clock input>"
#endif
#ifndef HWLOOP_HALF_PERIOD
#error "build with -DHWLOOP_HALF_PERIOD=<half clock period in time precision units>"
#endif

extern "C" void vlog_startup_routines_bootstrap(void);

// The model's evaluation without eval_step()'s bookkeeping: eval_step() also frees the garbage
// of SystemVerilog class objects (behind a mutex, every call) and flushes the messages that
// worker threads of a multi-threaded model queue. A single-threaded model of plain RTL has
// neither, and the two mutex operations per call are a fifth of a small design's simulation
// time. Quiet steps use it; every other step goes through eval_step(), which catches up on
// both. (Verilator's generated name: a link error if a Verilator release renames it.)
void Vtop___024root___eval(Vtop___024root* vlSelf);

static uint64_t now = 0;

// Legacy time source of the Verilator runtime; the context's time is set as well.
double sc_time_stamp() { return static_cast<double>(now); }

// cocotb learns that the simulation ends (and writes its results) from cbEndOfSimulation:
// once, whether the loop ends or the model exits early ($fatal, a Verilator error).
static void end_of_simulation(void* = nullptr) {
    static bool ended = false;
    if (ended) return;
    ended = true;
    VerilatedVpi::callCbs(cbEndOfSimulation);
}

// Value-change callbacks may write signals that fire further callbacks: call until quiet.
static void settle_value_callbacks() {
    while (VerilatedVpi::callValueCbs()) {
    }
}

// One time step's evaluation: the design, then ReadWrite callbacks, until no VPI write is
// pending; then the step's end and the ReadOnly callbacks. ``evaluated``: the design has been
// evaluated once already and value-change callbacks have started.
static void evaluate_step(Vtop& top, bool evaluated) {
    do {
        do {
            if (!evaluated) {
                top.eval_step();
                VerilatedVpi::clearEvalNeeded();
            }
            evaluated = false;
            VerilatedVpi::doInertialPuts();
            settle_value_callbacks();
        } while (VerilatedVpi::evalNeeded());
        VerilatedVpi::callCbs(cbReadWriteSynch);
        VerilatedVpi::doInertialPuts();
        settle_value_callbacks();
    } while (VerilatedVpi::evalNeeded());
    top.eval_end_step();
    VerilatedVpi::callCbs(cbReadOnlySynch);
}

int main(int argc, char** argv) {
    bool trace = false;
    std::string trace_file;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--trace")) {
            trace = true;
        } else if (!std::strcmp(argv[i], "--trace-file") && i + 1 < argc) {
            trace_file = argv[++i];
        }
    }
    // the default context: cocotb's VPI layer works on the thread's context
    VerilatedContext* const context = Verilated::threadContextp();
    context->commandArgs(argc, argv);
    Verilated::fatalOnVpiError(false);  // cocotb probes names that may not exist
    const std::unique_ptr<Vtop> top{new Vtop{""}};

#if VM_TRACE
    std::unique_ptr<Trace> tfp;
    if (trace) {
        context->traceEverOn(true);
        tfp.reset(new Trace);
        top->trace(tfp.get(), 99);
        tfp->open(trace_file.empty() ? default_trace_file : trace_file.c_str());
    }
#else
    if (trace) {
        std::fprintf(stderr, "--trace needs a build with waves\n");
        return 2;
    }
#endif

    vlog_startup_routines_bootstrap();
    Verilated::addExitCb(end_of_simulation, nullptr);
    VerilatedVpi::callCbs(cbStartOfSimulation);
    settle_value_callbacks();

    const uint64_t half = HWLOOP_HALF_PERIOD;
    uint64_t next_edge = half;
    top->HWLOOP_CLOCK = 0;
    // A quiet time step: no Python ran while advancing to it and no ReadWrite, ReadOnly or VPI
    // write waits, so only a value change can wake cocotb. While it sleeps (waiting for `done`,
    // say) that is every step; they skip the callback lists that are known to be empty. Until
    // Python runs again, nothing can add a callback: the next deadline stays what it was and
    // there are still no NextSimTime, ReadWrite or ReadOnly callbacks to look for.
    bool quiet = false;
    uint64_t deadline = 0;
    // Whether any value-change callback is registered: a quiet step with none (cocotb asleep
    // on a timer) does not look at the list, ~2% of an 8x8 free run.
    bool watching = true;
    // the model's threads, not the context's; and no waves: a trace dumps only the steps that
    // eval_step() marked active
    const bool bare_eval = top->threads() == 1 && !trace;
    while (!context->gotFinish()) {
        bool python_ran = true;
        if (!quiet) {
            evaluate_step(*top, false);
        } else {
            if (bare_eval) {
                Vtop___024root___eval(top->rootp);
            } else {
                top->eval_step();
                top->eval_end_step();
            }
            if (watching && VerilatedVpi::callValueCbs()) {
                evaluate_step(*top, true);  // cocotb woke up: the whole protocol
            } else {
                python_ran = false;
            }
        }
#if VM_TRACE
        if (tfp) tfp->dump(now);
#endif
        if (context->gotFinish()) break;
        // the clock never stops: the run ends when cocotb finishes (vpiFinish)
        if (python_ran) deadline = VerilatedVpi::cbNextDeadline();
        now = deadline < next_edge ? deadline : next_edge;
        context->time(now);
        bool woke = python_ran && VerilatedVpi::callCbs(cbNextSimTime);
        if (now == deadline) {
            VerilatedVpi::callTimedCbs();
            woke = true;
        }
        if (woke) settle_value_callbacks();
        // only Python adds or removes value-change callbacks
        if (python_ran || woke) watching = VerilatedVpi::hasCbs(cbValueChange);
        if (now == next_edge) {
            top->HWLOOP_CLOCK = !top->HWLOOP_CLOCK;
            next_edge += half;
        }
        quiet = !woke && (!python_ran
                          || (!VerilatedVpi::evalNeeded()
                              && !VerilatedVpi::hasCbs(cbReadWriteSynch)
                              && !VerilatedVpi::hasCbs(cbReadOnlySynch)));
    }

    top->final();
    end_of_simulation();
#if VM_TRACE
    if (tfp) tfp->close();
#endif
    return context->errorCount() ? 1 : 0;
}
