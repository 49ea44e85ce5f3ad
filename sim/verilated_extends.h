// Sign extension for Verilator's generated model, as a shift pair instead of the runtime's
// -(x & sign) | x.
//
// Included (g++ -include) into every C++ file of an hwloop systolic build, after verilated.h:
// the generated model's calls of VL_EXTENDS_II/QI/QQ then compile to one sign-extending move
// (movsx) or a shift pair instead of an and, a negation and an or. Every signed product and
// sum of the PE mesh has such extensions, and they were about a fifth of the design's
// evaluation time. Verilator only passes clean operands (no bits set above lbits) to these
// helpers, and on those both forms are equal (tests/sim/test_verilator.py compares them).
// Inline functions of Verilator's headers are parsed before these macros and keep the
// originals; the code after them (the model, the runtime's .cpp files) uses these.
#ifndef HWLOOP_VERILATED_EXTENDS_H_
#define HWLOOP_VERILATED_EXTENDS_H_

#include "verilated.h"

static inline IData hwloop_extends_ii(int lbits, IData lhs) VL_PURE {
    const int shift = 32 - lbits;
    return static_cast<IData>(static_cast<int32_t>(lhs << shift) >> shift);
}

static inline QData hwloop_extends_qq(int lbits, QData lhs) VL_PURE {
    const int shift = 64 - lbits;
    return static_cast<QData>(static_cast<int64_t>(lhs << shift) >> shift);
}

#define VL_EXTENDS_II(obits, lbits, lhs) hwloop_extends_ii((lbits), (lhs))
#define VL_EXTENDS_QI(obits, lbits, lhs) hwloop_extends_qq((lbits), static_cast<QData>(lhs))
#define VL_EXTENDS_QQ(obits, lbits, lhs) hwloop_extends_qq((lbits), (lhs))

#endif  // HWLOOP_VERILATED_EXTENDS_H_
