// Sign extension for Verilator's generated model, as a shift pair instead of the runtime's
// -(x & sign) | x.
//
// Included after verilated.h into every generated C++ file of an hwloop systolic build (the
// build's own verilated.h includes both: VERILATED_WRAPPER in sim/verilator.py): the generated
// model's calls of VL_EXTENDS_II/QI/QQ then compile to one sign-extending move (movsx) or a
// shift pair instead of an and, a negation and an or. Every signed product and sum of the PE
// mesh has such extensions, and they were about a fifth of the design's evaluation time.
// Verilator only passes clean operands (no bits set above lbits) to these helpers, and on
// those both forms are equal (tests/sim/test_verilator.py compares them). Inline functions of
// Verilator's headers are parsed before these macros and keep the originals, as does the
// runtime library (its .cpp files include Verilator's verilated.h from their own folder).
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

// Signed products: the operands' extensions inside the runtime's VL_MULS_* are the slow form
// (parsed before the macros above), so these are redefined too; the product is taken
// unsigned, which gives the same low bits without signed overflow.
static inline IData hwloop_muls_iii(int lbits, IData lhs, IData rhs) VL_PURE {
    return hwloop_extends_ii(lbits, lhs) * hwloop_extends_ii(lbits, rhs);
}

static inline QData hwloop_muls_qqq(int lbits, QData lhs, QData rhs) VL_PURE {
    return hwloop_extends_qq(lbits, lhs) * hwloop_extends_qq(lbits, rhs);
}

#define VL_EXTENDS_II(obits, lbits, lhs) hwloop_extends_ii((lbits), (lhs))
#define VL_EXTENDS_QI(obits, lbits, lhs) hwloop_extends_qq((lbits), static_cast<QData>(lhs))
#define VL_EXTENDS_QQ(obits, lbits, lhs) hwloop_extends_qq((lbits), (lhs))
#define VL_MULS_III(lbits, lhs, rhs) hwloop_muls_iii((lbits), (lhs), (rhs))
#define VL_MULS_QQQ(lbits, lhs, rhs) hwloop_muls_qqq((lbits), (lhs), (rhs))

#endif  // HWLOOP_VERILATED_EXTENDS_H_
