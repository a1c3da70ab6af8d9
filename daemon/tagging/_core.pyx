# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The rules tagger's per-message pipeline, compiled: the same steps and the same results as
``RulesTagger._tag_python`` in ``rules.py``, which stays the reference (and the path taken where this module
was not built).

What it reimplements, step by step (``tests/test_tagging_core.py`` compares the two on every labelled
message, on the benchmark's messages and on odd input):

* ``text.extract`` for ASCII text: fences, quoted lines, table rows, list items, inline code, lower-casing,
  the word regex's tokens, digits and question marks, with byte loops instead of regexes; each token is
  looked up in the vocabulary (stopwords, the markers' words, the model's words) on its bytes, before a
  str is made of it. Text that is not ASCII goes through the Python ``extract``;
* ``MarkerIndex.match``: a trie over the vocabulary ids of the markers' words, walked from every token (a
  marker " go with " is in " tok1 tok2 ... " exactly when its words are consecutive tokens);
* term novelty, ``classify_tier``, ``TierModel.decide`` and the six signal steps, with the lexicon checks
  the steps make (which markers are strong corrections, explicit bridges, ...) turned into per-marker flags
  when the core is built;
* for the daemon's path, the evidence's JSON text, byte for byte what ``orjson.dumps`` writes for the
  evidence dict (left to orjson when a string would need escaping).

All lexicons, weights and thresholds that are data (markers, flags, model weights) come from the Python
modules when the core is built; the arithmetic of the steps is written out here a second time, in the same
order, so that every float is the same.
"""

from libc.math cimport exp, floor, log1p, rint, signbit
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcmp, memcpy, memset
from cpython.ref cimport PyObject
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_Compare, PyUnicode_DATA, PyUnicode_DecodeASCII

# flags of a marker (by rank), each already restricted to the family the rule reads it in
cdef enum:
    F_ASKING = 1       # A.choice marker in rules._ASKING_CHOICE
    F_PROPOSING = 2    # A.choice marker in rules._PROPOSING
    F_APPROVED = 4     # A.ratify marker "approved"
    F_STRONG = 8       # error_correction.flaw marker in rules._STRONG_CORRECTION
    F_EXPLICIT = 16    # cross_domain_synthesis.bridge marker in rules._EXPLICIT_BRIDGES

# the characters of a name that is one token on its own, as the tokeniser cuts them
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

# one slot of the vocabulary's byte table: a word's hash, id and length, and its bytes when they fit (a
# lookup then reads one slot; longer words are compared in the pool)
cdef struct VSlot:
    unsigned long long hash
    int tid
    int length
    char inline[16]

# what the steps need to know of a vocabulary word, together (one cache line per word, not one per array)
cdef struct VInfo:
    double re  # the tier model's weight of the word, (A - E) + (C - E)j
    double im
    int root  # the trie node of the markers that start with it, or -1
    unsigned char stop  # a stopword
    unsigned char has_w  # the model weighs it
    unsigned char seen  # scratch: already added for this message


cdef struct ByteTable:
    VSlot *slots
    int bits


cdef void _table_build(ByteTable *table, list words) except *:
    """Fill ``table`` with (id, ASCII bytes) ``words``, at most half full."""
    cdef Py_ssize_t i, mask
    cdef int tid
    cdef bytes data
    cdef unsigned long long h
    table.bits = 4
    while (1 << table.bits) < 2 * len(words) + 2:
        table.bits += 1
    mask = (1 << table.bits) - 1
    table.slots = <VSlot*>_alloc((1 << table.bits) * sizeof(VSlot))
    for i in range(1 << table.bits):
        table.slots[i].tid = -1
    for tid, data in words:
        h = _fnv1a(<const char*>data, len(data))
        i = <Py_ssize_t>((h * 11400714819323198485ULL) >> (64 - table.bits))
        while table.slots[i].tid >= 0:
            i = (i + 1) & mask
        table.slots[i].tid = tid
        table.slots[i].hash = h
        table.slots[i].length = len(data)
        if len(data) <= 16:
            memcpy(table.slots[i].inline, <const char*>data, len(data))


cdef inline int _table_find(ByteTable *table, const char *pool, Py_ssize_t *offsets, const char *p,
                            Py_ssize_t n, unsigned long long h) noexcept nogil:
    """The id of the word ``p[:n]`` (hash ``h``) in ``table``, or -1."""
    cdef Py_ssize_t mask = (1 << table.bits) - 1
    cdef Py_ssize_t i = <Py_ssize_t>((h * 11400714819323198485ULL) >> (64 - table.bits))
    cdef VSlot *slot
    while True:
        slot = &table.slots[i]
        if slot.tid < 0:
            return -1
        if slot.hash == h and slot.length == n:
            if n <= 16:
                if memcmp(slot.inline, p, n) == 0:
                    return slot.tid
            elif memcmp(pool + offsets[slot.tid], p, n) == 0:
                return slot.tid
        i = (i + 1) & mask


# the same flags, for rules.build_core
FLAG_ASKING, FLAG_PROPOSING, FLAG_APPROVED, FLAG_STRONG, FLAG_EXPLICIT = (
    F_ASKING, F_PROPOSING, F_APPROVED, F_STRONG, F_EXPLICIT
)

cdef enum:
    N_FAM_IDS = 22
    _NOT_ID = 0  # the vocabulary ids of "not" and "or", the first two words it is given
    _OR_ID = 1

# the families the steps read, in this order (Core.__init__ maps them to family indexes)
FAMILY_SLOTS = (
    "A.ratify", "A.choice", "A.system", "C.agree", "C.concern", "C.question", "C.reflection", "C.synthesis",
    "E.status", "E.task", "E.spec", "novelty.idea", "novelty.weak_idea", "solution_quality.tradeoff",
    "solution_quality.proposal", "assumption_challenge.premise", "assumption_challenge.weak",
    "error_correction.flaw", "error_correction.self", "cross_domain_synthesis.bridge",
    "cross_domain_synthesis.field", "specialization_recognition.strength",
)

cdef enum:
    S_RATIFY, S_CHOICE, S_SYSTEM, S_AGREE, S_CONCERN, S_QUESTION, S_REFLECTION, S_SYNTHESIS, S_STATUS, S_TASK, \
    S_SPEC, S_IDEA, S_WEAK_IDEA, S_TRADE, S_PROPOSAL, S_PREMISE, S_AC_WEAK, S_FLAW, S_SELF, S_BRIDGE, S_FIELD, \
    S_STRENGTH

SHAPE_NAMES = ("q", "digits", "code", "inline", "list", "len")
TIER_NAMES = ("A", "C", "E")


# [A-Za-z0-9_]: the ASCII word characters of the regex ``\w`` (upper case is lowered as it is read)
cdef unsigned char _WORD[256]
for _c in range(256):
    _WORD[_c] = (48 <= _c <= 57) or (65 <= _c <= 90) or (97 <= _c <= 122) or _c == 95


cdef inline unsigned long long _fnv1a(const char *p, Py_ssize_t n) noexcept nogil:
    """FNV-1a over ``n`` bytes: the byte table's hash (a word's bytes, not Python's seeded str hash)."""
    cdef unsigned long long h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h ^= <unsigned char>p[i]
        h *= 1099511628211ULL
    return h


cdef void *_alloc(size_t size) except NULL:
    """Zeroed memory for a table of the core (at least one byte, so that an empty table is not NULL)."""
    cdef void *p = PyMem_Malloc(size if size else 1)
    if p == NULL:
        raise MemoryError()
    memset(p, 0, size if size else 1)
    return p


cdef inline bint _blank(char c) noexcept nogil:
    return c == b' ' or c == b'\t'


cdef inline bint _digit(char c) noexcept nogil:
    return b'0' <= c <= b'9'


cdef inline int _clamp(double value) noexcept nogil:
    # round() of a float: half to even, as rint in the default rounding mode
    cdef double r = rint(value)
    if r < 0:
        return 0
    if r > 100:
        return 100
    return <int>r


cdef inline Py_ssize_t _find3(const char *s, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    """Index of the first "```" at or after ``start``, or -1."""
    cdef const char *p
    cdef Py_ssize_t i = start
    while i + 2 < n:
        p = <const char*>memchr(s + i, b'`', n - 2 - i)
        if p == NULL:
            return -1
        i = p - s
        if s[i + 1] == b'`' and s[i + 2] == b'`':
            return i
        i += 1
    return -1


cdef inline Py_ssize_t _line_end(const char *s, Py_ssize_t start, Py_ssize_t m) noexcept nogil:
    """Index of the first line break at or after ``start``, or ``m``."""
    cdef const char *p = <const char*>memchr(s + start, b'\n', m - start) if start < m else NULL
    return m if p == NULL else p - s


cdef class Features:
    """``text.TextFeatures``, as the compiled steps read it."""
    cdef public list tokens
    cdef public str joined
    cdef public frozenset terms
    cdef public Py_ssize_t n_chars, n_digits, n_questions, table_rows, quoted, inline_code, list_items
    cdef public double code_share
    cdef public bint truncated
    cdef public Py_ssize_t ntok
    cdef public bint has_not, has_or  # the words "not" and "or": " not " / " or " in joined


cdef class Core:
    """The compiled pipeline for one marker index and one tier model (or none)."""

    cdef object _extract, _not_figure_search, _not_figure
    cdef frozenset _agent_names
    cdef Py_ssize_t _scan_chars
    # every word a marker, the stopwords or the model knows -> its id; by id: stopword?, the trie node of
    # the markers that start with it, the model's weight
    cdef dict _vocab
    cdef int n_vocab
    cdef list _vocab_words  # by id: the word itself, handed out for every token that is one
    cdef dict _name_ids  # agent name that is one plain word -> (its id, the id of "<name>'s")
    # the ASCII words of the vocabulary in an open-addressing table over their bytes, so that a token is
    # looked up before a str is made of it (and most tokens then reuse the vocabulary's str, hash included)
    cdef char *vt_pool
    cdef Py_ssize_t *vt_off
    cdef ByteTable vt_hot, vt_main
    cdef VInfo *vinfo
    # the marker trie: the ranks ending at each node, and (node, word id) -> child in an open-addressing table
    cdef int n_nodes
    cdef int *node_rstart
    cdef int *node_rcount
    cdef int *ranks_flat
    cdef unsigned long long *ch_keys
    cdef int *ch_vals
    cdef int ch_bits
    # ranks
    cdef int n_ranks, n_families, n_markers, not_figure_mid, n_found
    cdef int *rank_fam
    cdef int *rank_mid
    cdef unsigned char *rank_flags
    cdef list rank_marker, family_names
    cdef int slot[N_FAM_IDS]
    # scratch, per message
    cdef int *tok_ids
    cdef Py_ssize_t tok_cap
    cdef bint busy  # in tag(): the scratch buffers are in use
    cdef unsigned char *rank_seen
    cdef int *found
    cdef int *counts
    cdef unsigned char *mk_seen
    cdef int *fam_order
    cdef int max_used
    cdef double *used_re
    cdef double *used_im
    cdef PyObject **used_name
    # the tier model
    cdef bint has_model
    cdef object model_version
    cdef double bias_re, bias_im
    cdef unsigned char *fam_has
    cdef double *fam_re
    cdef double *fam_im
    cdef list fam_wname
    cdef unsigned char *mk_has
    cdef double *mk_re
    cdef double *mk_im
    cdef list mk_wname
    cdef unsigned char vote_has[3]
    cdef double vote_re[3]
    cdef double vote_im[3]
    cdef unsigned char rule_has[3]
    cdef double rule_re[3]
    cdef double rule_im[3]
    cdef unsigned char shape_has[6]
    cdef double shape_re[6]
    cdef double shape_im[6]
    # what _decide leaves for the evidence
    cdef double d_ar, d_ai, d_confidence
    cdef double d_top_p[3]
    cdef PyObject *d_top_name[3]
    cdef int d_ntop
    cdef tuple _fixed_names  # "vote:A" "vote:C" "vote:E" "rule:A" "rule:C" "rule:E", the shape names, "words"

    def __cinit__(self):
        self.vt_pool = NULL
        self.vt_off = NULL
        self.vt_hot.slots = NULL
        self.vt_main.slots = NULL
        self.vinfo = NULL
        self.node_rstart = NULL
        self.node_rcount = NULL
        self.ranks_flat = NULL
        self.ch_keys = NULL
        self.ch_vals = NULL
        self.rank_fam = NULL
        self.rank_mid = NULL
        self.rank_flags = NULL
        self.tok_ids = NULL
        self.rank_seen = NULL
        self.found = NULL
        self.counts = NULL
        self.mk_seen = NULL
        self.fam_order = NULL
        self.used_re = NULL
        self.used_im = NULL
        self.used_name = NULL
        self.fam_has = NULL
        self.fam_re = NULL
        self.fam_im = NULL
        self.mk_has = NULL
        self.mk_re = NULL
        self.mk_im = NULL

    def __dealloc__(self):
        PyMem_Free(self.vt_pool)
        PyMem_Free(self.vt_off)
        PyMem_Free(self.vt_hot.slots)
        PyMem_Free(self.vt_main.slots)
        PyMem_Free(self.vinfo)
        PyMem_Free(self.node_rstart)
        PyMem_Free(self.node_rcount)
        PyMem_Free(self.ranks_flat)
        PyMem_Free(self.ch_keys)
        PyMem_Free(self.ch_vals)
        PyMem_Free(self.rank_fam)
        PyMem_Free(self.rank_mid)
        PyMem_Free(self.rank_flags)
        PyMem_Free(self.tok_ids)
        PyMem_Free(self.rank_seen)
        PyMem_Free(self.found)
        PyMem_Free(self.counts)
        PyMem_Free(self.mk_seen)
        PyMem_Free(self.fam_order)
        PyMem_Free(self.used_re)
        PyMem_Free(self.used_im)
        PyMem_Free(self.used_name)
        PyMem_Free(self.fam_has)
        PyMem_Free(self.fam_re)
        PyMem_Free(self.fam_im)
        PyMem_Free(self.mk_has)
        PyMem_Free(self.mk_re)
        PyMem_Free(self.mk_im)

    def __init__(self, *, extract, not_figure_search, not_figure, stopwords, agent_names, scan_chars,
                 patterns, ranked, flags, model_version, tables):
        """``patterns``: (words, ranks) per marker pattern; ``ranked``: (family, marker) by rank; ``flags``:
        the F_* flags by rank; ``tables``: ``TierModel.tables()``, or None to let the votes decide."""
        cdef int i, r, f, m, node, tid
        self._extract = extract
        self._not_figure_search = not_figure_search
        self._not_figure = not_figure
        self._agent_names = frozenset(agent_names)
        self._scan_chars = scan_chars
        self._fixed_names = ("vote:A", "vote:C", "vote:E", "rule:A", "rule:C", "rule:E") + SHAPE_NAMES + ("words",)
        # -- ranks, families, markers
        self.family_names = []
        family_index = {}
        marker_index = {}
        self.rank_marker = []
        self.n_ranks = len(ranked)
        self.rank_fam = <int*>_alloc(self.n_ranks * sizeof(int))
        self.rank_mid = <int*>_alloc(self.n_ranks * sizeof(int))
        self.rank_flags = <unsigned char*>_alloc(self.n_ranks)
        self.rank_seen = <unsigned char*>_alloc(self.n_ranks)
        self.found = <int*>_alloc(self.n_ranks * sizeof(int))
        marker_names = []
        for r, (family, marker) in enumerate(ranked):
            if family not in family_index:
                family_index[family] = len(self.family_names)
                self.family_names.append(family)
            if marker not in marker_index:
                marker_index[marker] = len(marker_names)
                marker_names.append(marker)
            self.rank_fam[r] = family_index[family]
            self.rank_mid[r] = marker_index[marker]
            self.rank_flags[r] = flags[r]
            self.rank_marker.append(marker)
        for i, name in enumerate(FAMILY_SLOTS):
            self.slot[i] = family_index.get(name, -1)
        if self.slot[S_FLAW] < 0:
            raise ValueError("the lexicons need an error_correction.flaw family")
        # "not <figure>" is a marker of its own, after all the lexicon's
        self.not_figure_mid = len(marker_names)
        marker_names.append(not_figure)
        self.n_families = len(self.family_names)
        self.n_markers = len(marker_names)
        self.counts = <int*>_alloc(self.n_families * sizeof(int))
        self.fam_order = <int*>_alloc(self.n_families * sizeof(int))
        self.mk_seen = <unsigned char*>_alloc(self.n_markers)
        self.max_used = self.n_families + self.n_markers + 16
        self.used_re = <double*>_alloc(self.max_used * sizeof(double))
        self.used_im = <double*>_alloc(self.max_used * sizeof(double))
        self.used_name = <PyObject**>_alloc(self.max_used * sizeof(PyObject*))
        self.tok_ids = <int*>_alloc((self._scan_chars + 2) * sizeof(int))
        self.tok_cap = self._scan_chars + 2
        # -- the vocabulary: stopwords, the markers' words, the model's words
        by_token = tables["by_token"] if tables is not None else {}
        vocab = {}
        plain_names = [n for n in self._agent_names if n and all(c in _PLAIN for c in n)]
        for word in (["not", "or"] + list(stopwords) + [w for words, _ in patterns for w in words]
                     + list(by_token) + plain_names + [n + "'s" for n in plain_names]):
            if word not in vocab:
                vocab[word] = len(vocab)
        self._name_ids = {n: (vocab[n], vocab[n + "'s"]) for n in plain_names}
        self._vocab = vocab
        self.n_vocab = len(vocab)
        self._vocab_words = list(vocab)
        self.vinfo = <VInfo*>_alloc(self.n_vocab * sizeof(VInfo))
        for i in range(self.n_vocab):
            self.vinfo[i].root = -1
        for word in stopwords:
            self.vinfo[<int>vocab[word]].stop = 1
        self._build_byte_table()
        for word, w in by_token.items():
            tid = vocab[word]
            self.vinfo[tid].has_w = 1
            self.vinfo[tid].re = w.real
            self.vinfo[tid].im = w.imag
        # -- the marker trie
        children = {}
        node_ranks = []
        for words, ranks in patterns:
            tid = vocab[words[0]]
            if self.vinfo[tid].root < 0:
                self.vinfo[tid].root = len(node_ranks)
                node_ranks.append([])
            node = self.vinfo[tid].root
            for word in words[1:]:
                key = (node, <int>vocab[word])
                if key not in children:
                    children[key] = len(node_ranks)
                    node_ranks.append([])
                node = children[key]
            node_ranks[node].extend(ranks)
        self.n_nodes = len(node_ranks)
        self.node_rstart = <int*>_alloc(self.n_nodes * sizeof(int))
        self.node_rcount = <int*>_alloc(self.n_nodes * sizeof(int))
        self.ranks_flat = <int*>_alloc((sum(len(x) for x in node_ranks) + 1) * sizeof(int))
        m = 0
        for node in range(self.n_nodes):
            self.node_rstart[node] = m
            self.node_rcount[node] = len(node_ranks[node])
            for r in node_ranks[node]:
                self.ranks_flat[m] = r
                m += 1
        self.ch_bits = 4
        while (1 << self.ch_bits) < 2 * len(children) + 2:
            self.ch_bits += 1
        self.ch_keys = <unsigned long long*>_alloc((1 << self.ch_bits) * sizeof(unsigned long long))
        self.ch_vals = <int*>_alloc((1 << self.ch_bits) * sizeof(int))
        memset(self.ch_keys, 0xFF, (1 << self.ch_bits) * sizeof(unsigned long long))
        for (node, tid), child in children.items():
            self._set_child(node, tid, child)
        # -- the tier model
        self.has_model = tables is not None
        self.model_version = model_version
        self.fam_wname = [None] * self.n_families
        self.mk_wname = [None] * self.n_markers
        self.fam_has = <unsigned char*>_alloc(self.n_families)
        self.fam_re = <double*>_alloc(self.n_families * sizeof(double))
        self.fam_im = <double*>_alloc(self.n_families * sizeof(double))
        self.mk_has = <unsigned char*>_alloc(self.n_markers)
        self.mk_re = <double*>_alloc(self.n_markers * sizeof(double))
        self.mk_im = <double*>_alloc(self.n_markers * sizeof(double))
        memset(self.vote_has, 0, 3)
        memset(self.rule_has, 0, 3)
        memset(self.shape_has, 0, 6)
        if tables is None:
            return
        z = tables["bias"]
        self.bias_re, self.bias_im = z.real, z.imag
        for f in range(self.n_families):
            named = tables["by_family"].get(self.family_names[f])
            if named is not None:
                self.fam_has[f] = 1
                self.fam_wname[f] = named[0]
                self.fam_re[f], self.fam_im[f] = named[1].real, named[1].imag
        for m in range(self.n_markers):
            named = tables["by_marker"].get(marker_names[m])
            if named is not None:
                self.mk_has[m] = 1
                self.mk_wname[m] = named[0]
                self.mk_re[m], self.mk_im[m] = named[1].real, named[1].imag
        for i in range(3):
            w = tables["votes"][i]
            if w is not None:
                self.vote_has[i] = 1
                self.vote_re[i], self.vote_im[i] = w.real, w.imag
            w = tables["rules"][i]
            if w is not None:
                self.rule_has[i] = 1
                self.rule_re[i], self.rule_im[i] = w.real, w.imag
        for i in range(6):
            w = tables["shape"][i]
            if w is not None:
                self.shape_has[i] = 1
                self.shape_re[i], self.shape_im[i] = w.real, w.imag

    cdef void _build_byte_table(self) except *:
        # Two tables: the stopwords (half of all tokens) in a small one that stays in the CPU's cache, then
        # everything else; a word is in exactly one of them.
        cdef int tid
        cdef Py_ssize_t size = 0, off = 0
        cdef bytes data
        encoded = [w.encode("ascii") if w.isascii() else None for w in self._vocab_words]
        for data in encoded:
            if data is not None:
                size += len(data)
        self.vt_pool = <char*>_alloc(size)
        self.vt_off = <Py_ssize_t*>_alloc(self.n_vocab * sizeof(Py_ssize_t))
        hot, rest = [], []
        for tid in range(self.n_vocab):
            data = encoded[tid]
            if data is None:
                continue
            memcpy(self.vt_pool + off, <const char*>data, len(data))
            self.vt_off[tid] = off
            off += len(data)
            (hot if self.vinfo[tid].stop or tid <= _OR_ID else rest).append((tid, data))
        _table_build(&self.vt_hot, hot)
        _table_build(&self.vt_main, rest)

    cdef inline int _word_id(self, const char *p, Py_ssize_t n) noexcept nogil:
        """The vocabulary id of the ASCII word ``p[:n]``, or -1."""
        cdef unsigned long long h = _fnv1a(p, n)
        cdef int tid = _table_find(&self.vt_hot, self.vt_pool, self.vt_off, p, n, h)
        if tid >= 0:
            return tid
        return _table_find(&self.vt_main, self.vt_pool, self.vt_off, p, n, h)

    cdef inline Py_ssize_t _slot_of(self, int node, int tid) noexcept nogil:
        cdef unsigned long long key = ((<unsigned long long>node) << 32) | <unsigned int>tid
        return <Py_ssize_t>((key * 11400714819323198485ULL) >> (64 - self.ch_bits))

    cdef void _set_child(self, int node, int tid, int child) noexcept:
        cdef unsigned long long key = ((<unsigned long long>node) << 32) | <unsigned int>tid
        cdef Py_ssize_t mask = (1 << self.ch_bits) - 1, i = self._slot_of(node, tid)
        while self.ch_keys[i] != 0xFFFFFFFFFFFFFFFFULL:
            i = (i + 1) & mask
        self.ch_keys[i] = key
        self.ch_vals[i] = child

    cdef inline int _child(self, int node, int tid) noexcept nogil:
        """The trie node after ``node`` for word ``tid``, or -1."""
        cdef unsigned long long key = ((<unsigned long long>node) << 32) | <unsigned int>tid
        cdef Py_ssize_t mask = (1 << self.ch_bits) - 1, i = self._slot_of(node, tid)
        cdef unsigned long long k
        while True:
            k = self.ch_keys[i]
            if k == key:
                return self.ch_vals[i]
            if k == 0xFFFFFFFFFFFFFFFFULL:
                return -1
            i = (i + 1) & mask

    # ------------------------------------------------------------------ step 1: features

    def extract(self, str content):
        """``text.extract(content)`` (and the vocabulary id of each token, kept for the later steps)."""
        return self._features(content, False)

    cdef Features _features(self, str content, bint lean):
        """The features of ``content``; ``lean``: without the list of tokens (``tokens`` is None), which the
        later steps do not read (they read ``ntok`` and the tokens' vocabulary ids)."""
        cdef Features feats = self._extract_ascii(content, lean)
        cdef Py_ssize_t i
        cdef dict vocab
        if feats is None:
            feats = Features()
            py = self._extract(content)
            feats.tokens = py.tokens
            feats.joined = py.joined
            feats.terms = py.content_terms
            feats.n_chars = py.n_chars
            feats.n_digits = py.n_digits
            feats.n_questions = py.n_questions
            feats.code_share = py.code_share
            feats.table_rows = py.table_rows
            feats.quoted = py.quoted_lines
            feats.inline_code = py.inline_code
            feats.list_items = py.list_items
            feats.truncated = py.truncated
            vocab = self._vocab
            feats.ntok = len(feats.tokens)
            self._reserve_tokens(feats.ntok)
            for i in range(feats.ntok):
                self.tok_ids[i] = vocab.get(feats.tokens[i], -1)
                feats.has_not |= self.tok_ids[i] == _NOT_ID
                feats.has_or |= self.tok_ids[i] == _OR_ID
        return feats

    cdef Features _extract_ascii(self, str content, bint lean):
        """The features of ASCII content (the vocabulary ids of its tokens in ``tok_ids``), or None where the
        Python path must decide (non-ASCII text)."""
        cdef str text = content if len(content) <= self._scan_chars else content[:self._scan_chars]
        if not text.isascii():
            return None
        cdef bytes raw = text.encode("ascii")
        cdef Py_ssize_t n = len(raw)
        cdef const char *src = raw
        cdef char *s = <char*>PyMem_Malloc(n + 1)
        cdef char *joined = NULL
        if s == NULL:
            raise MemoryError()
        cdef Py_ssize_t r, w, idx, end, code_chars = 0, quoted = 0, table_rows = 0, list_items = 0
        cdef Py_ssize_t line_end, p, q, m, backticks = 0, digits = 0, questions = 0, start, jn, ntok = 0
        cdef bint has_newline, has_pipe, has_not = False, has_or = False
        cdef unsigned char c
        cdef Features feats
        cdef dict vocab = self._vocab
        cdef int tid
        cdef str token
        cdef list tokens, terms
        try:
            # fenced code blocks -> " " (an unclosed fence runs to the end)
            idx = _find3(src, 0, n)
            if idx < 0:
                memcpy(s, src, n)
                m = n
            else:
                r = 0
                w = 0
                while idx >= 0:
                    memcpy(s + w, src + r, idx - r)
                    w += idx - r
                    end = _find3(src, idx + 3, n)
                    end = n if end < 0 else end + 3
                    code_chars += end - idx
                    s[w] = b' '
                    w += 1
                    r = end
                    idx = _find3(src, r, n)
                memcpy(s + w, src + r, n - r)
                m = w + n - r
            # lines quoting another message -> " " (in place: the text only shrinks)
            if memchr(s, b'>', m) != NULL:
                r = 0
                w = 0
                while True:
                    line_end = _line_end(s, r, m)
                    p = r
                    while p < line_end and _blank(s[p]):
                        p += 1
                    if p < line_end and s[p] == b'>':
                        quoted += 1
                        s[w] = b' '
                        w += 1
                    else:
                        while r < line_end:
                            s[w] = s[r]
                            w += 1
                            r += 1
                    if line_end >= m:
                        break
                    s[w] = b'\n'
                    w += 1
                    r = line_end + 1
                m = w
            # table rows and list items, line by line (list items only count in text with a line break)
            has_newline = memchr(s, b'\n', m) != NULL
            has_pipe = memchr(s, b'|', m) != NULL
            if has_newline or has_pipe:
                r = 0
                while r <= m:
                    line_end = _line_end(s, r, m)
                    p = r
                    while p < line_end and _blank(s[p]):
                        p += 1
                    if p < line_end:
                        c = s[p]
                        if c == b'|':
                            q = line_end
                            while q > p + 1 and _blank(s[q - 1]):
                                q -= 1
                            if q - 1 > p and s[q - 1] == b'|':
                                table_rows += 1
                        elif not has_newline:
                            pass
                        elif c == b'-' or c == b'*':
                            if p + 1 < line_end and _blank(s[p + 1]):
                                list_items += 1
                        elif _digit(c):
                            if p + 1 < line_end and _digit(s[p + 1]):
                                if (p + 3 < line_end and (s[p + 2] == b'.' or s[p + 2] == b')')
                                        and _blank(s[p + 3])):
                                    list_items += 1
                            elif (p + 2 < line_end and (s[p + 1] == b'.' or s[p + 1] == b')')
                                    and _blank(s[p + 2])):
                                list_items += 1
                    r = line_end + 1
            # one pass: lower-case, count, and cut tokens as the word regex does: \w+(?:'\w+)*
            joined = <char*>PyMem_Malloc(m + 2)
            if joined == NULL:
                raise MemoryError()
            tokens = []
            terms = []
            joined[0] = b' '
            jn = 1
            r = 0
            while r < m:
                c = s[r]
                if not _WORD[c]:
                    if c == b'?':
                        questions += 1
                    elif c == b'`':
                        backticks += 1
                    r += 1
                    continue
                start = r
                while True:
                    while r < m and _WORD[<unsigned char>s[r]]:
                        c = s[r]
                        if c <= b'9':
                            digits += c >= b'0'
                        elif c <= b'Z' and c >= b'A':
                            s[r] = c + 32
                        r += 1
                    if r + 1 < m and s[r] == b"'" and _WORD[<unsigned char>s[r + 1]]:
                        r += 1
                        continue
                    break
                tid = self._word_id(s + start, r - start)
                memcpy(joined + jn, s + start, r - start)
                jn += r - start
                joined[jn] = b' '
                jn += 1
                self.tok_ids[ntok] = tid
                ntok += 1
                if tid < 0:
                    token = PyUnicode_DecodeASCII(s + start, r - start, NULL)
                    terms.append(token)
                    if not lean:
                        tokens.append(token)
                    continue
                if tid <= _OR_ID:
                    has_not |= tid == _NOT_ID
                    has_or |= tid == _OR_ID
                if self.vinfo[tid].stop:
                    # a stopword: only the token list holds it (the lean features leave its str alone)
                    if not lean:
                        tokens.append(self._vocab_words[tid])
                    continue
                token = <str>self._vocab_words[tid]
                terms.append(token)
                if not lean:
                    tokens.append(token)
            feats = Features()
            feats.tokens = None if lean else tokens
            feats.ntok = ntok
            feats.joined = PyUnicode_DecodeASCII(joined, jn, NULL) if ntok else "  "
            feats.terms = frozenset(terms)
            feats.n_chars = len(content)
            feats.n_digits = digits
            feats.n_questions = questions
            feats.code_share = code_chars / <double>n if n else 0.0
            feats.table_rows = table_rows
            feats.quoted = quoted
            feats.inline_code = backticks // 2
            feats.list_items = list_items
            feats.truncated = len(content) > self._scan_chars
            feats.has_not = has_not
            feats.has_or = has_or
            return feats
        finally:
            PyMem_Free(s)
            PyMem_Free(joined)

    # ------------------------------------------------------------------ the whole pipeline

    def tag_rows(self, rows, cache, str version, dumps, past_message):
        """``RulesTagger.tag_rows`` on this core: (message_id, agent, conversation_id, reply_to, content) rows
        in, the store's tag rows out (or the error's text for a message that could not be tagged), each
        message remembered in its conversation (``cache``: the tagger's ``HistoryCache``) as a
        ``past_message``."""
        cdef list out = []
        cdef tuple res, scores
        new_tuple = tuple.__new__
        for message_id, agent, conversation_id, reply_to, content in rows:
            try:
                hist = cache.get(conversation_id)
                res = self.tag(content, message_id, agent, reply_to, hist, True)
                hist.add(new_tuple(past_message, (message_id, agent, res[7])), True)
                scores = <tuple>res[3]
                evidence = res[6]
                out.append((version, res[0], res[1], res[2], res[4], res[5], scores[0], scores[1], scores[2],
                            scores[3], scores[4], scores[5],
                            evidence if type(evidence) is str else dumps(evidence).decode()))
            except Exception as exc:  # one odd message must not cost the batch its tags
                out.append(f"{type(exc).__name__}: {exc}")
        return out

    cpdef tuple tag(self, str content, str message_id, str agent, reply_to, hist, bint as_json=False):
        """``RulesTagger._tag_python`` up to remembering the message: (tier, rule, confidence, the six scores,
        novelty, emergence, evidence, the message's content terms). ``hist``: its conversation's
        ``ConversationHistory``, whose seen terms this updates. ``as_json``: the evidence as its JSON text
        (what ``orjson.dumps`` makes of the dict) where the core can write it, else the dict."""
        if self.busy:
            # the scratch buffers belong to the call in progress (another thread's, or a callback's)
            raise RuntimeError("a tagger core tags one message at a time; do not share a RulesTagger "
                               "between threads")
        self.busy = True
        try:
            return self._tag(content, message_id, agent, reply_to, hist, as_json)
        finally:
            self.busy = False

    cdef tuple _tag(self, str content, str message_id, str agent, reply_to, hist, bint as_json):
        cdef Features feats = self._features(content, True)
        cdef Py_ssize_t ntok = feats.ntok, i, j
        cdef int nf = 0, r, f, nfam = 0, t, x, node, k
        cdef int flag_asking = 0, flag_proposing = 0, flag_approved = 0, flag_strong = 0, flag_explicit = 0
        cdef int *counts = self.counts
        cdef int *slot = self.slot
        cdef int *ids = self.tok_ids
        # -- markers: walk the trie from every token
        cdef str joined = feats.joined
        cdef bint not_figure = False
        try:
            for i in range(ntok):
                if ids[i] < 0:
                    continue
                node = self.vinfo[ids[i]].root
                j = i + 1
                while node >= 0:
                    for k in range(self.node_rstart[node], self.node_rstart[node] + self.node_rcount[node]):
                        r = self.ranks_flat[k]
                        if not self.rank_seen[r]:
                            self.rank_seen[r] = 1
                            self.found[nf] = r
                            nf += 1
                    if j >= ntok or ids[j] < 0:
                        break
                    node = self._child(node, ids[j])
                    j += 1
            _sort_ints(self.found, nf)
            self.n_found = nf
            for x in range(nf):
                r = self.found[x]
                f = self.rank_fam[r]
                if counts[f] == 0:
                    self.fam_order[nfam] = f
                    nfam += 1
                counts[f] += 1
                t = self.rank_flags[r]
                if t:
                    flag_asking += (t & F_ASKING) != 0
                    flag_proposing += (t & F_PROPOSING) != 0
                    flag_approved += (t & F_APPROVED) != 0
                    flag_strong += (t & F_STRONG) != 0
                    flag_explicit += (t & F_EXPLICIT) != 0
            if feats.has_not and self._not_figure_search(joined) is not None:
                not_figure = True
                f = slot[S_FLAW]
                if counts[f] == 0:
                    self.fam_order[nfam] = f
                    nfam += 1
                counts[f] += 1
                flag_strong += 1  # "not <figure>" is a strong correction
            return self._after_markers(feats, nfam, not_figure, flag_asking, flag_proposing, flag_approved,
                                       flag_strong, flag_explicit, message_id, agent, reply_to, hist, as_json)
        finally:
            for x in range(nf):
                self.rank_seen[self.found[x]] = 0
            memset(counts, 0, self.n_families * sizeof(int))
            self.n_found = 0

    cdef int _reserve_tokens(self, Py_ssize_t n) except -1:
        """Room for ``n`` token ids (the Python tokeniser may cut more tokens than the scanned characters
        allow the ASCII one: lower-casing can lengthen text)."""
        cdef int *ids
        if n + 2 <= self.tok_cap:
            return 0
        ids = <int*>PyMem_Realloc(self.tok_ids, (n + 2) * sizeof(int))
        if ids == NULL:
            raise MemoryError()
        self.tok_ids = ids
        self.tok_cap = n + 2
        return 0

    cdef dict _hits_dict(self, int nfam, bint not_figure):
        """family -> markers found (``MarkerIndex.match``): families in the order of their first marker,
        markers by rank, a corrected figure last in its family."""
        cdef dict hits = {}
        cdef list markers
        cdef int x, k, f, r
        for x in range(nfam):
            f = self.fam_order[x]
            markers = []
            for k in range(self.n_found):
                r = self.found[k]
                if self.rank_fam[r] == f:
                    markers.append(self.rank_marker[r])
            if not_figure and f == self.slot[S_FLAW]:
                markers.append(self._not_figure)
            hits[self.family_names[f]] = markers
        return hits

    cdef list _names_in(self, Features feats, senders):
        """``sorted({n for n in agent_names | senders if f" {n} " in joined or f" {n}'s " in joined})``: a
        name that is one plain word is looked up among the tokens' ids ("claude" and "claude's" are
        tokens), any other name is searched in ``joined``."""
        cdef set found = set()
        cdef Py_ssize_t i
        cdef int a, b
        cdef str joined = feats.joined
        cdef int *ids = self.tok_ids
        for name in self._agent_names.union(senders):
            pair = self._name_ids.get(name)
            if pair is None:
                if f" {name} " in joined or f" {name}'s " in joined:
                    found.add(name)
                continue
            a, b = pair
            for i in range(feats.ntok):
                if ids[i] == a or ids[i] == b:
                    found.add(name)
                    break
        return sorted(found)

    cdef inline int _count(self, int s):
        cdef int f = self.slot[s]
        return self.counts[f] if f >= 0 else 0

    cdef tuple _after_markers(self, Features feats, int nfam, bint not_figure, int flag_asking,
                              int flag_proposing, int flag_approved, int flag_strong, int flag_explicit,
                              str message_id, str agent, reply_to, hist, bint as_json):
        # -- term novelty (ConversationHistory.unseen_then_seen)
        cdef frozenset terms = feats.terms
        cdef Py_ssize_t n_terms = len(terms), unseen = 0, before
        cdef int novelty = 0
        cdef double share, damping
        if n_terms:
            if hist.max_messages <= 0:
                unseen = n_terms
            else:
                seen = hist.seen
                before = len(seen)
                (<set>seen).update(terms)
                unseen = len(seen) - before
            share = unseen / <double>n_terms
            damping = min(1.0, n_terms / 8.0)
            novelty = _clamp(100 * share * damping)
        history = hist.messages
        cdef Py_ssize_t n_history = len(history)

        # -- classify_tier
        cdef double a_vote = 0, c_vote = 0, e_vote = 0, ratify_weight, margin, conf, hi, mid, lo
        cdef int choice, system, ratify
        cdef bint asking
        cdef str tier, rule
        cdef int tier_i
        cdef int vote_kind = 0  # 0: the three votes, 1: code_share, 2: table_rows
        cdef double va = 0, vc = 0, ve = 0
        cdef double code_share = feats.code_share
        if code_share >= 0.4:
            tier, rule, tier_i, conf = "E", "E.code_block", 2, 0.95
            vote_kind = 1
            va = _round2d(code_share)
        elif feats.table_rows >= 3:
            tier, rule, tier_i, conf = "E", "E.table", 2, 0.9
            vote_kind = 2
        else:
            choice = self._count(S_CHOICE)
            system = self._count(S_SYSTEM)
            ratify = self._count(S_RATIFY)
            ratify_weight = 2.0 if (system == 0 and not choice and ratify and flag_approved == ratify) else 4.0
            asking = feats.n_questions > 0 and (
                flag_asking > 0 or (feats.has_or and (" do we " in feats.joined
                                                                or " should we " in feats.joined))
            )
            if asking and not choice:
                choice = 1
            if system == 0 and flag_proposing:
                system = 1
            a_vote = ratify_weight * min(ratify, 2) + (
                (2.0 * choice + 1.0 * min(system, 3) + (1.0 if asking else 0.0)) if choice and system else 0.0
            )
            c_vote = (
                1.5 * self._count(S_AGREE)
                + 1.5 * self._count(S_CONCERN)
                + 1.0 * self._count(S_QUESTION)
                + 2.0 * self._count(S_REFLECTION)
                + 1.0 * self._count(S_SYNTHESIS)
                + (1.0 if feats.n_questions else 0.0)
                + 0.5 * min(self._count(S_TRADE), 4)
                + 1.0 * min(self._count(S_STRENGTH), 2)
            )
            e_vote = (
                2.0 * self._count(S_STATUS)
                + 1.5 * self._count(S_TASK)
                + 0.5 * min(self._count(S_SPEC), 6)
                + min(3.0, feats.n_digits / 8.0)
                + (2.0 if code_share > 0 else 0.0)
                + 0.5 * min(feats.inline_code, 6)
                + 0.5 * min(feats.list_items, 6)
            )
            hi = c_vote if c_vote > e_vote else e_vote
            if (a_vote >= 4.0 and a_vote >= hi - 1.0) or (a_vote >= 3.0 and a_vote > hi):
                tier, tier_i = "A", 0
                rule = "A.direction_on_system" if feats.n_questions == 0 else "A.direction_question"
            elif e_vote >= c_vote and e_vote > 0:
                tier, rule, tier_i = "E", "E.concrete_work", 2
            elif c_vote > 0:
                tier, rule, tier_i = "C", "C.dialogue", 1
            else:
                tier, rule, tier_i = "C", "C.default_no_markers", 1
            # sorted((a, c, e), reverse=True): the top two
            hi, mid, lo = _top3(a_vote, c_vote, e_vote)
            margin = hi - mid
            conf = 0.4 if hi == 0 else min(0.95, 0.5 + 0.08 * margin)
            va, vc, ve = _round2d(a_vote), _round2d(c_vote), _round2d(e_vote)
        confidence = _round2(conf)

        # -- the tier model
        cdef object rules_said = None
        cdef int best
        if self.has_model:
            best = self._decide(feats, vote_kind == 0, va, vc, ve, tier_i, nfam, not_figure)
            model_tier = TIER_NAMES[best]
            if model_tier != tier:
                rules_said = [tier, rule]
                tier, rule = model_tier, "tier_model." + model_tier
            confidence = _round2(self.d_confidence)

        # -- the six signals
        cdef int s_nov, s_sol = 0, s_ass = 0, s_err = 0, s_cross = 0, s_spec = 0, angle = 0, n, strong, weak
        cdef bint self_correction
        cdef double score
        cdef bint has_correction = False, self_corrects = False
        corrects = None
        names = None
        strong = self._count(S_IDEA)
        weak = self._count(S_WEAK_IDEA)
        if novelty >= 50:
            if self._count(S_PREMISE):
                angle += 20
            if self._count(S_FIELD) and self._count(S_BRIDGE):
                angle += 20
        if not strong and not weak:
            s_nov = _clamp(min(30.0, novelty * 0.3) + angle)
        else:
            score = (30 * min(strong, 2) + 12 * min(weak, 3)) + novelty * 0.3 + angle
            s_nov = _clamp(score)
        n = self._count(S_TRADE)
        if n:
            s_sol = _clamp(18 * min(n, 4) + (12 if self._count(S_PROPOSAL) else 0))
        strong = self._count(S_PREMISE)
        weak = self._count(S_AC_WEAK)
        if strong or weak:
            s_ass = _clamp(45 * min(strong, 2) + 25 * min(weak, 2) + (10 if feats.n_questions else 0))
        n = self._count(S_FLAW)
        if n:
            self_correction = self._count(S_SELF) > 0
            s_err = 25 * (n - flag_strong) + 45 * flag_strong + (20 if self_correction else 0)
            if s_err > 40:
                has_correction = True
                corrects = _corrected_message(history, terms, agent, reply_to, self_correction)
                self_corrects = self_correction
            s_err = _clamp(s_err)
        n = self._count(S_FIELD)
        if n:
            s_cross = _clamp(25 * min(n, 2) + 25 * min(self._count(S_BRIDGE), 2))
        elif self._count(S_BRIDGE):
            s_cross = _clamp(25 * min(flag_explicit, 2))
        n = self._count(S_STRENGTH)
        if n:
            names = self._names_in(feats, hist.agents)
            s_spec = _clamp(30 * min(n, 3) + (15 * min(len(names), 2) if names else 0))
            if not names:
                names = None
        scores = (s_nov, s_sol, s_ass, s_err, s_cross, s_spec)

        # -- emergence: the strongest signal plus a quarter of each other signal above 20
        cdef int top = s_nov, total = 0, emergence_score
        for x in scores:
            if x > top:
                top = x
        if top <= 20:
            emergence_score = _clamp(top)
        else:
            for x in scores:
                if x > 20:
                    total += x
            emergence_score = _clamp(top + 0.25 * (total - top))

        # -- the evidence: its JSON text written here, or the dict (``orjson.dumps`` of which is that text)
        evidence = None
        if as_json:
            evidence = self._evidence_json(feats, nfam, not_figure, vote_kind, va, vc, ve, rules_said,
                                           has_correction, corrects, self_corrects, names, unseen, n_terms,
                                           n_history)
        if evidence is None:
            if vote_kind == 0:
                votes = {"A": va, "C": vc, "E": ve}
            elif vote_kind == 1:
                votes = {"code_share": va}
            else:
                votes = {"table_rows": feats.table_rows}
            evidence = {"tier_votes": votes}
            if self.has_model:
                model_evidence = {
                    "model": self.model_version,
                    "scores_vs_E": {"A": _round2(self.d_ar), "C": _round2(self.d_ai)},
                    "top": [[<object>self.d_top_name[x], _round2(self.d_top_p[x])]
                            for x in range(self.d_ntop) if self.d_top_p[x] > 0],
                }
                if rules_said is not None:
                    model_evidence["rules_said"] = rules_said
                evidence["tier_model"] = model_evidence
            evidence["markers"] = self._hits_dict(nfam, not_figure)
            signal_evidence = {}
            if has_correction:
                signal_evidence["error_correction"] = {"corrects": corrects, "self": self_corrects}
            if names is not None:
                signal_evidence["specialization_recognition"] = {"agents": names}
            evidence["signals"] = signal_evidence
            evidence["novelty"] = {"unseen_terms": unseen, "terms": n_terms, "history": n_history}
            if feats.quoted:
                evidence["quoted_lines_ignored"] = feats.quoted
            if feats.truncated:
                evidence["scanned_chars"] = self._scan_chars
        return (tier, rule, confidence, scores, novelty, emergence_score, evidence, terms)

    cdef object _evidence_json(self, Features feats, int nfam, bint not_figure, int vote_kind, double va,
                               double vc, double ve, object rules_said, bint has_correction, object corrects,
                               bint self_corrects, object names, Py_ssize_t unseen, Py_ssize_t n_terms,
                               Py_ssize_t n_history):
        """The evidence's JSON text, byte for byte what ``orjson.dumps`` writes for the dict, or None when a
        value is one this writer leaves to orjson (a string that would need escaping, a float outside
        1e-4..1e16)."""
        cdef JBuf b
        cdef int x, k, f, r
        cdef bint first
        b.data = NULL
        b.n = 0
        b.cap = 0
        b.bad = False
        try:
            _jb_lit(&b, b'{"tier_votes":{')
            if vote_kind == 0:
                _jb_lit(&b, b'"A":')
                _jb_float(&b, va)
                _jb_lit(&b, b',"C":')
                _jb_float(&b, vc)
                _jb_lit(&b, b',"E":')
                _jb_float(&b, ve)
            elif vote_kind == 1:
                _jb_lit(&b, b'"code_share":')
                _jb_float(&b, va)
            else:
                _jb_lit(&b, b'"table_rows":')
                _jb_int(&b, feats.table_rows)
            _jb_lit(&b, b'}')
            if self.has_model:
                _jb_lit(&b, b',"tier_model":{"model":')
                _jb_str(&b, self.model_version)
                _jb_lit(&b, b',"scores_vs_E":{"A":')
                _jb_float(&b, _round2d(self.d_ar))
                _jb_lit(&b, b',"C":')
                _jb_float(&b, _round2d(self.d_ai))
                _jb_lit(&b, b'},"top":[')
                first = True
                for x in range(self.d_ntop):
                    if self.d_top_p[x] > 0:
                        _jb_lit(&b, b'[' if first else b',[')
                        first = False
                        _jb_str(&b, <object>self.d_top_name[x])
                        _jb_lit(&b, b',')
                        _jb_float(&b, _round2d(self.d_top_p[x]))
                        _jb_lit(&b, b']')
                _jb_lit(&b, b']')
                if rules_said is not None:
                    _jb_lit(&b, b',"rules_said":[')
                    _jb_str(&b, rules_said[0])
                    _jb_lit(&b, b',')
                    _jb_str(&b, rules_said[1])
                    _jb_lit(&b, b']')
                _jb_lit(&b, b'}')
            _jb_lit(&b, b',"markers":{')
            for x in range(nfam):
                f = self.fam_order[x]
                if x:
                    _jb_lit(&b, b',')
                _jb_str(&b, self.family_names[f])
                _jb_lit(&b, b':[')
                first = True
                for k in range(self.n_found):
                    r = self.found[k]
                    if self.rank_fam[r] == f:
                        if not first:
                            _jb_lit(&b, b',')
                        first = False
                        _jb_str(&b, self.rank_marker[r])
                if not_figure and f == self.slot[S_FLAW]:
                    if not first:
                        _jb_lit(&b, b',')
                    _jb_str(&b, self._not_figure)
                _jb_lit(&b, b']')
            _jb_lit(&b, b'},"signals":{')
            if has_correction:
                _jb_lit(&b, b'"error_correction":{"corrects":')
                if corrects is None:
                    _jb_lit(&b, b'null')
                elif type(corrects) is str:
                    _jb_str(&b, corrects)
                else:
                    b.bad = True
                _jb_lit(&b, b',"self":true}' if self_corrects else b',"self":false}')
            if names is not None:
                _jb_lit(&b, b',"specialization_recognition":{"agents":[' if has_correction
                        else b'"specialization_recognition":{"agents":[')
                for x in range(len(names)):
                    if x:
                        _jb_lit(&b, b',')
                    _jb_str(&b, names[x])
                _jb_lit(&b, b']}')
            _jb_lit(&b, b'},"novelty":{"unseen_terms":')
            _jb_int(&b, unseen)
            _jb_lit(&b, b',"terms":')
            _jb_int(&b, n_terms)
            _jb_lit(&b, b',"history":')
            _jb_int(&b, n_history)
            _jb_lit(&b, b'}')
            if feats.quoted:
                _jb_lit(&b, b',"quoted_lines_ignored":')
                _jb_int(&b, feats.quoted)
            if feats.truncated:
                _jb_lit(&b, b',"scanned_chars":')
                _jb_int(&b, self._scan_chars)
            _jb_lit(&b, b'}')
            if b.bad:
                return None
            return PyUnicode_DecodeASCII(b.data, b.n, NULL)
        finally:
            PyMem_Free(b.data)

    cdef inline void _use(self, int *n_used, object name, double re, double im) noexcept:
        """Record one feature's push for the evidence (``name`` is kept alive by the core's tables)."""
        self.used_name[n_used[0]] = <PyObject*>name
        self.used_re[n_used[0]] = re
        self.used_im[n_used[0]] = im
        n_used[0] += 1

    cdef inline void _add_marker(self, int mid, double *zr, double *zi, int *n_used) noexcept:
        """Add marker ``mid``'s weight once per message (a marker of two families is one feature)."""
        if self.mk_seen[mid]:
            return
        self.mk_seen[mid] = 1
        if self.mk_has[mid]:
            zr[0] += self.mk_re[mid]
            zi[0] += self.mk_im[mid]
            self._use(n_used, self.mk_wname[mid], self.mk_re[mid], self.mk_im[mid])

    cdef int _decide(self, Features feats, bint has_votes, double va, double vc, double ve, int rules_tier,
                     int nfam, bint not_figure) except -1:
        """``TierModel.decide``: the tier's index (A, C, E); its probability, the scores and the three
        strongest pushes are left in ``d_confidence``, ``d_ar``, ``d_ai``, ``d_top_*``."""
        cdef double zr = self.bias_re, zi = self.bias_im, cr, ci, value, v, ar, ai
        cdef int x, f, r, k, mid, tid, n_used = 0
        cdef Py_ssize_t i, ntok = feats.ntok
        cdef int *found = self.found
        fixed = self._fixed_names
        # families, in the order of the evidence
        for x in range(nfam):
            f = self.fam_order[x]
            if self.fam_has[f]:
                value = log1p(self.counts[f])
                cr = value * self.fam_re[f]
                ci = value * self.fam_im[f]
                zr += cr
                zi += ci
                self._use(&n_used, self.fam_wname[f], cr, ci)
        # each distinct marker once, in the order of the evidence (family by family, then "not <figure>")
        for x in range(nfam):
            f = self.fam_order[x]
            for k in range(self.n_found):
                r = found[k]
                if self.rank_fam[r] != f:
                    continue
                self._add_marker(self.rank_mid[r], &zr, &zi, &n_used)
            if not_figure and f == self.slot[S_FLAW]:
                self._add_marker(self.not_figure_mid, &zr, &zi, &n_used)
        for k in range(self.n_found):
            self.mk_seen[self.rank_mid[found[k]]] = 0
        self.mk_seen[self.not_figure_mid] = 0
        cdef double vote[3]
        vote[0], vote[1], vote[2] = va, vc, ve
        for x in range(3):
            v = vote[x]
            if has_votes and self.vote_has[x] and v != 0:
                cr = v / 4 * self.vote_re[x]
                ci = v / 4 * self.vote_im[x]
                zr += cr
                zi += ci
                self._use(&n_used, fixed[x], cr, ci)
        if self.rule_has[rules_tier]:
            zr += self.rule_re[rules_tier]
            zi += self.rule_im[rules_tier]
            self._use(&n_used, fixed[3 + rules_tier], self.rule_re[rules_tier], self.rule_im[rules_tier])
        cdef double shape[6]
        shape[0] = 1.0 if feats.n_questions else 0.0
        shape[1] = min(3.0, feats.n_digits / 8.0)
        shape[2] = 1.0 if feats.code_share > 0 else 0.0
        shape[3] = min(feats.inline_code, 6) / 3.0
        shape[4] = min(feats.list_items, 6) / 3.0
        shape[5] = log1p(<double>feats.n_chars) / 7
        for x in range(6):
            if self.shape_has[x] and shape[x]:
                cr = shape[x] * self.shape_re[x]
                ci = shape[x] * self.shape_im[x]
                zr += cr
                zi += ci
                self._use(&n_used, fixed[6 + x], cr, ci)
        # the words: each distinct one once, in the order of first occurrence
        cdef double wr = 0.0, wi = 0.0
        cdef int *ids = self.tok_ids
        for i in range(ntok):
            tid = ids[i]
            if tid < 0 or not self.vinfo[tid].has_w or self.vinfo[tid].seen:
                continue
            self.vinfo[tid].seen = 1
            wr += self.vinfo[tid].re
            wi += self.vinfo[tid].im
        for i in range(ntok):
            if ids[i] >= 0:
                self.vinfo[ids[i]].seen = 0
        self._use(&n_used, fixed[12], wr, wi)
        # z + words, then the decision (TierModel._decision)
        ar = zr + wr
        ai = zi + wi
        cdef int best = 0 if (ar >= ai and ar >= 0.0) else (1 if ai >= 0.0 else 2)
        cdef double top = ar
        if ai > top:
            top = ai
        if 0.0 > top:
            top = 0.0
        cdef double total = exp(ar - top) + exp(ai - top) + exp(-top)
        # the three strongest pushes towards the chosen tier, as sorted((push, name), reverse=True)[:3]
        cdef double p, top_p[3]
        cdef PyObject *top_name[3]
        cdef int n_top = 0, y
        for x in range(n_used):
            cr = self.used_re[x]
            ci = self.used_im[x]
            if best == 0:
                p = cr - ci / 2
            elif best == 1:
                p = ci - cr / 2
            else:
                p = -(cr + ci) / 2
            # insert into the top three, largest first; equal pushes are ordered by name, largest first
            y = n_top
            while y > 0 and _before(p, self.used_name[x], top_p[y - 1], top_name[y - 1]):
                if y < 3:
                    top_p[y] = top_p[y - 1]
                    top_name[y] = top_name[y - 1]
                y -= 1
            if y < 3:
                top_p[y] = p
                top_name[y] = self.used_name[x]
                if n_top < 3:
                    n_top += 1
        self.d_ar = ar
        self.d_ai = ai
        self.d_confidence = 1.0 / total
        self.d_ntop = n_top
        for y in range(n_top):
            self.d_top_p[y] = top_p[y]
            self.d_top_name[y] = top_name[y]
        return best


cdef inline bint _before(double p, PyObject *name, double q, PyObject *other) except -1:
    """Whether (p, name) sorts after (q, other), i.e. comes first in a descending sort of such tuples."""
    if p != q:
        return p > q
    return PyUnicode_Compare(<object>name, <object>other) > 0


cdef inline void _sort_ints(int *a, int n) noexcept nogil:
    """Insertion sort: a message finds a few dozen markers at most."""
    cdef int i, j, v
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


cdef inline (double, double, double) _top3(double a, double b, double c) noexcept nogil:
    """(a, b, c) in descending order."""
    cdef double t
    if a < b:
        t = a; a = b; b = t
    if b < c:
        t = b; b = c; c = t
    if a < b:
        t = a; a = b; b = t
    return a, b, c


cdef object _corrected_message(object history, frozenset terms, str agent, object reply_to,
                               bint self_correction):
    """``rules._corrected_message``: the earlier message a correction corrects (``history``: the
    conversation's ``PastMessage`` tuples, (message_id, agent, terms), oldest first)."""
    cdef list items = list(history)
    cdef Py_ssize_t n_hist = len(items), i, n, best_n = -1
    cdef tuple past, best = None
    if n_hist == 0:
        return None
    if self_correction:
        for i in range(n_hist - 1, -1, -1):
            past = <tuple>items[i]
            if past[1] == agent:
                return past[0]
    if reply_to:
        for i in range(n_hist):
            if (<tuple>items[i])[0] == reply_to:
                return reply_to
    if n_hist == 1:
        return (<tuple>items[0])[0]
    # the last 6, newest first: on a tie the newest wins
    for i in range(n_hist - 1, max(-1, n_hist - 7), -1):
        past = <tuple>items[i]
        n = _overlap(<frozenset>past[2], terms)
        if n > best_n:
            best, best_n = past, n
    return best[0]


cdef Py_ssize_t _overlap(frozenset a, frozenset b) except -1:
    """``len(a & b)`` without building the intersection."""
    cdef Py_ssize_t n = 0
    if len(a) > len(b):
        a, b = b, a
    for x in a:
        if x in b:
            n += 1
    return n


cdef object _round2(double x):
    """:func:`_round2d` as a Python float."""
    return _round2d(x)


cdef double _round2d(double x) except? -1.5:
    """``round(x, 2)``: the multiple of 0.01 nearest to x, as the double nearest to it.

    ``x * 100`` is within a few ulps of its exact value, so unless it lies next to a half (where only the
    exact value can say which way to go) its nearest integer is that of the exact value, and dividing by
    100 is one correctly rounded operation, as Python's string round trip is. Near a half, or for large or
    non-finite values, Python's ``round`` decides.
    """
    cdef double y = x * 100.0
    cdef double d
    if -1e6 < y < 1e6:
        d = y - floor(y)
        if not (0.4999999 < d < 0.5000001):
            return rint(y) / 100.0
    return round(x, 2)


def round2(double x):
    """:func:`_round2d`, for the tests."""
    return _round2d(x)


def json_float(double x):
    """How the evidence writer formats ``x`` (None: it leaves ``x`` to orjson), for the tests."""
    cdef JBuf b
    b.data = NULL
    b.n = 0
    b.cap = 0
    b.bad = False
    try:
        _jb_float(&b, x)
        return None if b.bad else PyUnicode_DecodeASCII(b.data, b.n, NULL)
    finally:
        PyMem_Free(b.data)


# ---------------------------------------------------------------------- the evidence's JSON text

cdef struct JBuf:
    char *data
    Py_ssize_t n
    Py_ssize_t cap
    bint bad  # a value was met that this writer does not format as orjson does: the caller falls back


cdef int _jb_reserve(JBuf *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char *data
    if b.n + extra <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap * 2 > b.n + extra + 512 else b.n + extra + 512
    data = <char*>PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef int _jb_raw(JBuf *b, const char *s, Py_ssize_t n) except -1:
    _jb_reserve(b, n)
    memcpy(b.data + b.n, s, n)
    b.n += n
    return 0


cdef int _jb_lit(JBuf *b, bytes s) except -1:
    return _jb_raw(b, <const char*>s, len(s))


cdef int _jb_str(JBuf *b, str s) except -1:
    """``s`` as a JSON string, where it is printable ASCII without a quote or a backslash (else bad)."""
    cdef Py_ssize_t i, n = len(s)
    cdef const char *data
    cdef char c
    if not s.isascii():
        b.bad = True
        return 0
    data = <const char*>PyUnicode_DATA(s)
    for i in range(n):
        c = data[i]
        if c < 32 or c == b'"' or c == b'\\':
            b.bad = True
            return 0
    _jb_reserve(b, n + 2)
    b.data[b.n] = b'"'
    memcpy(b.data + b.n + 1, data, n)
    b.data[b.n + n + 1] = b'"'
    b.n += n + 2
    return 0


cdef int _jb_int(JBuf *b, long long v) except -1:
    cdef char tmp[32]
    cdef int n = snprintf(tmp, 32, "%lld", v)
    return _jb_raw(b, tmp, n)


cdef int _jb_float(JBuf *b, double x) except -1:
    """A multiple of 0.01 (what the evidence holds) as orjson and ``repr`` write it: "7.0", "-0.54"; any
    other value, or one beyond 1e9, is bad."""
    cdef char tmp[48]
    cdef long long k, whole, frac
    cdef int n
    cdef bint negative
    if not (-1e9 < x < 1e9):
        b.bad = True
        return 0
    k = <long long>rint(x * 100.0)
    if k / 100.0 != x:
        b.bad = True
        return 0
    negative = signbit(x)
    if k < 0:
        k = -k
    whole = k // 100
    frac = k % 100
    if frac == 0:
        n = snprintf(tmp, 48, "%s%lld.0", b"-" if negative else b"", whole)
    elif frac % 10 == 0:
        n = snprintf(tmp, 48, "%s%lld.%lld", b"-" if negative else b"", whole, frac // 10)
    else:
        n = snprintf(tmp, 48, "%s%lld.%02lld", b"-" if negative else b"", whole, frac)
    return _jb_raw(b, tmp, n)
