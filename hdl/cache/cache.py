"""A set-associative, write-back, write-allocate cache: tags and replacement state in RTL.

It is a timing/behaviour model of hits and victims (no data payload): one access per cycle,
answered two cycles later. The exact replacement rules are in docs/caches.md and are the same
as the golden model's (``sim/cache/cachemodel.c``).

Pipeline: stage 0 reads the set (and the replacement table) from synchronous memories; stage 1
compares tags, picks the way, writes the set back and counts; a transparent read port forwards
that write to a back-to-back access of the same set. The response is registered.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwloop.errors import ParameterError

from .hashing import fold, rotl
from .params import RTL_POLICIES, CacheConfig
from .prefetcher import Prefetcher, PrefetcherConfig
from .table import Table

PC_BITS = 64
COUNTER_BITS = 32
#: The RRPV a prefetch fill gets under the table policy (no PC to look up).
PF_TABLE_RRPV = 6


def _bits_for(count: int) -> int:
    """Bits to hold 0..count-1 (at least 1)."""
    return max(1, (count - 1).bit_length())


class Cache(wiring.Component):
    """The cache of ``config``, optionally with a prefetcher.

    Request: ``req_valid``/``req_ready``, ``req_addr`` (byte address), ``req_pc``,
    ``req_write``. Response (two cycles later): ``resp_valid``, ``resp_hit``, ``resp_way`` (the
    way hit or filled), ``resp_evict`` (a valid line was evicted), ``resp_writeback`` (it was
    dirty). Counters wrap at 2**32.
    """

    def __init__(self, *, config: CacheConfig, table: Table | None = None,
                 prefetch: PrefetcherConfig | None = None, prefetch_table: Table | None = None):
        if config.policy not in RTL_POLICIES:
            self._MustUse__silence = True  # never built: no "unused elaboratable" warning
            raise ParameterError(f"policy {config.policy!r} exists only in the model "
                                 f"(RTL has {', '.join(RTL_POLICIES)})")
        self.config = config
        self.table = table
        self.prefetch = prefetch
        self.prefetch_table = prefetch_table
        self.way_bits = _bits_for(config.ways)
        signature = {
            "req_valid": In(1), "req_ready": Out(1), "req_addr": In(config.addr_bits),
            "req_pc": In(PC_BITS), "req_write": In(1),
            "resp_valid": Out(1), "resp_hit": Out(1), "resp_way": Out(self.way_bits),
            "resp_evict": Out(1), "resp_writeback": Out(1),
            "hits": Out(COUNTER_BITS), "misses": Out(COUNTER_BITS),
            "evictions": Out(COUNTER_BITS), "writebacks": Out(COUNTER_BITS),
        }
        if prefetch is not None:
            for name in ("pf_requests", "pf_issued", "pf_useful", "pf_late",
                         "pf_evicted_unused", "pf_dropped"):
                signature[name] = Out(COUNTER_BITS)
        super().__init__(signature)

    # --- layout of one set word: per way {valid, dirty, pf, tag, st}, then the PLRU tree ---
    @property
    def st_bits(self) -> int:
        policy = self.config.policy
        if policy == "lru":
            return _bits_for(self.config.ways)
        if policy == "srrip":
            return 2
        if policy == "table":
            return 3
        return 0

    @property
    def way_word(self) -> int:
        return 3 + self.config.tag_bits + self.st_bits

    @property
    def plru_bits(self) -> int:
        return self.config.ways - 1 if self.config.policy == "plru" else 0

    @property
    def set_word(self) -> int:
        return self.config.ways * self.way_word + self.plru_bits

    def initial_set(self) -> int:
        word = 0
        for w in range(self.config.ways):
            policy = self.config.policy
            st = w if policy == "lru" else 3 if policy == "srrip" else 7 if policy == "table" \
                else 0
            word |= st << (w * self.way_word + 3 + self.config.tag_bits)
        return word

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W, T, S = cfg.ways, cfg.tag_bits, self.st_bits
        WB = self.way_word
        line_bits = cfg.addr_bits - cfg.offset_bits

        # depth >= 2: a 1-deep memory would get a zero-width address in Verilog
        depth = max(cfg.sets, 2)
        m.submodules.sets = sets = Memory(shape=self.set_word, depth=depth,
                                          init=[self.initial_set()] * depth)
        wr = sets.write_port()
        rd = sets.read_port(transparent_for=(wr,))

        # ---------------- operation select: a demand access or a prefetch fill ----------------
        if self.prefetch is not None:
            m.submodules.prefetcher = pf = Prefetcher(config=self.prefetch, line_bits=line_bits,
                                                      table=self.prefetch_table)
        op_valid = Signal()
        op_line = Signal(line_bits)
        op_is_fill = Signal()
        if self.prefetch is not None:
            # a ready fill goes first; the cycle after a fill is a bubble so that the
            # prefetcher sees the pop before choosing again
            after_fill = Signal()
            m.d.sync += after_fill.eq(op_valid & op_is_fill)
            take_fill = pf.fill_valid & ~after_fill
            m.d.comb += [
                self.req_ready.eq(~pf.fill_valid & ~after_fill),
                op_is_fill.eq(take_fill),
                op_valid.eq(take_fill | (self.req_valid & ~after_fill)),
                op_line.eq(Mux(take_fill, pf.fill_line, self.req_addr[cfg.offset_bits:])),
            ]
        else:
            m.d.comb += [
                self.req_ready.eq(1),
                op_valid.eq(self.req_valid),
                op_line.eq(self.req_addr[cfg.offset_bits:]),
            ]
        demand = Signal()
        m.d.comb += demand.eq(self.req_valid & self.req_ready)
        if self.prefetch is not None:
            m.d.comb += [pf.lookup_valid.eq(demand), pf.lookup_pc.eq(self.req_pc),
                         pf.lookup_line.eq(self.req_addr[cfg.offset_bits:])]
        m.d.comb += rd.addr.eq(op_line[:cfg.index_bits])

        # ---------------- table policy: PC hash with a PC history ----------------
        table_r = Signal(3)
        if cfg.policy == "table":
            table = self.table
            assert table is not None
            n = table.index_bits
            m.submodules.rtable = rtable = Memory(
                shape=table.entry_bits, depth=max(table.entries, 2),
                init=[int(v) for v in table.values] + [0] * (table.entries < 2))
            trd = rtable.read_port()
            history = [Signal(PC_BITS, name=f"pc_hist{j}") for j in range(1, table.history + 1)]
            pcs = [self.req_pc, *history]
            index = fold(pcs[0][2:], PC_BITS - 2, n)
            for j in range(1, table.history + 1):
                index = index ^ rotl(fold(pcs[j][2:], PC_BITS - 2, n), j, n)
            m.d.comb += trd.addr.eq(index)
            with m.If(demand):
                for j in range(table.history):
                    m.d.sync += history[j].eq(pcs[j])
            m.d.comb += table_r.eq(trd.data >> (table.entry_bits - 3))

        # ---------------- stage 1 ----------------
        s1_valid = Signal()
        s1_fill = Signal()
        s1_line = Signal(line_bits)
        s1_write = Signal()
        m.d.sync += [
            s1_valid.eq(op_valid),
            s1_fill.eq(op_is_fill),
            s1_line.eq(op_line),
            s1_write.eq(self.req_write & ~op_is_fill),
        ]
        s1_tag = s1_line[cfg.index_bits:]
        old = rd.data
        valid = [old[w * WB] for w in range(W)]
        dirty = [old[w * WB + 1] for w in range(W)]
        pfbit = [old[w * WB + 2] for w in range(W)]
        tags = [old[w * WB + 3:w * WB + 3 + T] for w in range(W)]
        st = [old[w * WB + 3 + T:w * WB + 3 + T + S] for w in range(W)]
        plru = old[W * WB:W * WB + self.plru_bits]

        def first(bits: list) -> tuple[Signal, Signal]:
            found = Signal()
            index = Signal(self.way_bits)
            m.d.comb += found.eq(Cat(*bits).any())
            for w in reversed(range(len(bits))):
                with m.If(bits[w]):
                    m.d.comb += index.eq(w)
            return found, index

        hit, hit_way = first([valid[w] & (tags[w] == s1_tag) for w in range(W)])
        free, free_way = first([~valid[w] for w in range(W)])

        # the policy's victim when every way is valid
        lfsr = Signal(16, init=cfg.seed)
        victim = Signal(self.way_bits)
        top = 3 if cfg.policy == "srrip" else 7
        rr_max = Signal(max(S, 1))
        if cfg.policy == "lru":
            _, lru_way = first([st[w] == W - 1 for w in range(W)])
            m.d.comb += victim.eq(lru_way)
        elif cfg.policy == "plru":
            node = Const(0, 8)
            for _ in range((W - 1).bit_length()):
                node = 2 * node + 1 + plru.bit_select(node, 1)
            m.d.comb += victim.eq(node - (W - 1))
        elif cfg.policy in ("srrip", "table"):
            # a signal per step: a Mux that names the running maximum twice doubles the
            # expression (and the Verilog) at every way
            running = st[0]
            for w in range(1, W):
                step = Signal(S, name=f"rr_max{w}")
                m.d.comb += step.eq(Mux(st[w] > running, st[w], running))
                running = step
            m.d.comb += rr_max.eq(running)
            _, rr_way = first([st[w] == rr_max for w in range(W)])
            m.d.comb += victim.eq(rr_way)
        elif cfg.policy == "random":
            m.d.comb += victim.eq((lfsr * W) >> 16)

        miss = Signal()
        replace = Signal()
        target = Signal(self.way_bits)
        m.d.comb += [
            miss.eq(s1_valid & ~hit),
            replace.eq(miss & ~free),
            target.eq(Mux(hit, hit_way, Mux(free, free_way, victim))),
        ]
        # a prefetch fill of a line already present does nothing
        change = Signal()
        m.d.comb += change.eq(s1_valid & ~(s1_fill & hit))

        evict = Signal()
        writeback = Signal()
        pf_unused = Signal()
        for w in range(W):
            with m.If(target == w):
                m.d.comb += [
                    evict.eq(replace & valid[w]),
                    writeback.eq(replace & valid[w] & dirty[w]),
                    pf_unused.eq(replace & valid[w] & pfbit[w]),
                ]
        pf_hit = Signal()  # a demand hit on a prefetched line
        for w in range(W):
            with m.If(hit_way == w):
                m.d.comb += pf_hit.eq(s1_valid & ~s1_fill & hit & pfbit[w])

        # ---- the new set word ----
        new_valid = [Signal(name=f"new_valid{w}") for w in range(W)]
        new_dirty = [Signal(name=f"new_dirty{w}") for w in range(W)]
        new_pf = [Signal(name=f"new_pf{w}") for w in range(W)]
        new_tag = [Signal(T, name=f"new_tag{w}") for w in range(W)]
        new_st = [Signal(max(S, 1), name=f"new_st{w}") for w in range(W)]
        new_plru = Signal(max(self.plru_bits, 1))
        for w in range(W):
            m.d.comb += [new_valid[w].eq(valid[w]), new_dirty[w].eq(dirty[w]),
                         new_pf[w].eq(pfbit[w]), new_tag[w].eq(tags[w])]
            if S:
                aged = st[w]
                if cfg.policy in ("srrip", "table"):
                    aged = Mux(replace, st[w] + (top - rr_max), st[w])
                m.d.comb += new_st[w].eq(aged)
        if self.plru_bits:
            m.d.comb += new_plru.eq(plru)
        ins_r = Mux(s1_fill, PF_TABLE_RRPV, table_r)
        target_st = Signal(max(S, 1))
        for w in range(W):
            with m.If(target == w):
                m.d.comb += target_st.eq(st[w])
        for w in range(W):
            with m.If(target == w):
                with m.If(hit):
                    m.d.comb += new_pf[w].eq(0)
                    with m.If(s1_write):
                        m.d.comb += new_dirty[w].eq(1)
                with m.Else():
                    m.d.comb += [new_valid[w].eq(1), new_dirty[w].eq(s1_write),
                                 new_pf[w].eq(s1_fill), new_tag[w].eq(s1_tag)]
                if cfg.policy == "lru":
                    m.d.comb += new_st[w].eq(0)
                elif cfg.policy == "srrip":
                    m.d.comb += new_st[w].eq(Mux(hit, 0, 2))
                elif cfg.policy == "table":
                    m.d.comb += new_st[w].eq(Mux(hit, Mux(table_r == 7, 7, 0), ins_r))
                elif cfg.policy == "plru":
                    n = w + W - 1
                    while n > 0:
                        p = (n - 1) // 2
                        m.d.comb += new_plru[p].eq(1 if n == 2 * p + 1 else 0)
                        n = p
            if cfg.policy == "lru":
                with m.Elif(st[w] < target_st):
                    m.d.comb += new_st[w].eq(st[w] + 1)
        fields = []
        for w in range(W):
            fields += [new_valid[w], new_dirty[w], new_pf[w], new_tag[w]]
            if S:
                fields.append(new_st[w][:S])
        if self.plru_bits:
            fields.append(new_plru[:self.plru_bits])
        m.d.comb += [wr.addr.eq(s1_line[:cfg.index_bits]), wr.data.eq(Cat(*fields)),
                     wr.en.eq(change)]
        if cfg.policy == "random":
            with m.If(replace & change):
                m.d.sync += lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ 0xB400, lfsr >> 1))

        # ---------------- response and counters ----------------
        s1_demand = Signal()
        m.d.comb += s1_demand.eq(s1_valid & ~s1_fill)
        m.d.sync += [
            self.resp_valid.eq(s1_demand),
            self.resp_hit.eq(hit),
            self.resp_way.eq(target),
            self.resp_evict.eq(evict),
            self.resp_writeback.eq(writeback),
        ]
        with m.If(s1_demand & hit):
            m.d.sync += self.hits.eq(self.hits + 1)
        with m.If(s1_demand & ~hit):
            m.d.sync += self.misses.eq(self.misses + 1)
        with m.If(change & evict):
            m.d.sync += self.evictions.eq(self.evictions + 1)
        with m.If(change & writeback):
            m.d.sync += self.writebacks.eq(self.writebacks + 1)

        if self.prefetch is not None:
            m.d.comb += [
                pf.demand_valid.eq(s1_demand),
                pf.demand_line.eq(s1_line),
                pf.demand_pc.eq(self._s1_pc(m)),
                pf.demand_miss.eq(~hit),
                pf.demand_pf_hit.eq(pf_hit),
                pf.fill_taken.eq(s1_valid & s1_fill),
            ]
            with m.If(pf_hit):
                m.d.sync += self.pf_useful.eq(self.pf_useful + 1)
            with m.If(change & pf_unused):
                m.d.sync += self.pf_evicted_unused.eq(self.pf_evicted_unused + 1)
            with m.If(s1_valid & s1_fill & ~hit):
                m.d.sync += self.pf_issued.eq(self.pf_issued + 1)
            m.d.comb += [self.pf_requests.eq(pf.requests), self.pf_late.eq(pf.late),
                         self.pf_dropped.eq(pf.dropped)]
        return m

    def _s1_pc(self, m: Module) -> Signal:
        s1_pc = Signal(PC_BITS)
        m.d.sync += s1_pc.eq(self.req_pc)
        return s1_pc
