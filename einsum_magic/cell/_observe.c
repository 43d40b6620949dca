/* einsum_magic.cell._observe: the observer's two hot paths, in C.
 *
 * While a cell runs, einsum_magic.cell.capture sees every call of an einsum function, and
 * every import statement (a module imported by the cell gets its einsum observed too).
 * Both run in a loop, so both cost each call; in Python they cost more than a small einsum
 * itself. The pure-Python versions in capture.py do the same where this module is not built.
 *
 * Repeat: the repeated calls of a known einsum site. A call the observer has seen before
 * at the same site (the calling frame's code and instruction) with the same equation object
 * and the same operands, or operands of the same shapes, only adds one to that site's count.
 * Repeat makes that test for the sites the observer armed it for, calls the original
 * function and counts the call, without running any Python of its own; every other call (a
 * new site, new shapes, keyword arguments, a site not armed) goes to the Python observer,
 * which keeps the whole logic.
 *
 *     Repeat(original, observer)      calls: original(*args) counted, or observer(*args, **kw)
 *     .call(*args, **kwargs)          the same, as a builtin method (what the wrapper calls)
 *     .arm(frame, args, shapes, site) the site `site` (its `count` attribute) runs at frame's
 *                                     instruction; args: its latest call; shapes: a tuple of
 *                                     the operands' (args[1:]) `.shape`, or None
 *     .flush()                        add the calls counted here to their sites' `count`
 *     .clear()                        flush, then forget every site (no array kept alive)
 *
 * ImportHook: what builtins.__import__ is while a cell runs. It imports as the original
 * does, then calls `after()` (Python: observe what was awaited) only when something is
 * awaited and sys.modules grew since, or an awaited module is importing right now; an
 * import statement of a module imported already (torch.einsum runs two a call) costs one
 * comparison.
 *
 *     ImportHook(original, after)     calls: original(*args, **kwargs), then maybe after()
 *     .set(waiting, pending, seen)    whether anything is awaited, whether an awaited module
 *                                     is importing, len(sys.modules) when after() last ran
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

/* -- Repeat ---------------------------------------------------------------------------- */

#define SLOTS 16                 /* sites armed at once (most loops call a few einsums) */

typedef struct {
    PyObject *code;              /* the calling code object (NULL: a free slot) */
    int lasti;                   /* its instruction */
    PyObject *args;              /* the latest call's positional arguments (a tuple) */
    PyObject *shapes;            /* the operands' shapes (a tuple), or NULL */
    PyObject *site;              /* the observer's site: its `count` gets `pending` */
    Py_ssize_t pending;          /* calls counted here, not added to the site yet */
} Entry;

typedef struct {
    PyObject_HEAD
    PyObject *original;
    PyObject *observer;
    Entry entries[SLOTS];
    int next;                    /* the slot the next new site replaces when all are taken */
} Repeat;

static PyObject *shape_name;     /* "shape" */
static PyObject *count_name;     /* "count" */

static int lasti_of(PyFrameObject *frame) {
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLasti(frame);
#else
    return frame->f_lasti;
#endif
}

/* Add an entry's pending calls to its site's count (0, or -1 with an exception set). */
static int flush_entry(Entry *e) {
    if (e->pending == 0 || e->site == NULL)
        return 0;
    PyObject *count = PyObject_GetAttr(e->site, count_name);
    if (count == NULL)
        return -1;
    PyObject *more = PyLong_FromSsize_t(e->pending);
    PyObject *sum = more == NULL ? NULL : PyNumber_Add(count, more);
    Py_DECREF(count);
    Py_XDECREF(more);
    if (sum == NULL)
        return -1;
    int failed = PyObject_SetAttr(e->site, count_name, sum);
    Py_DECREF(sum);
    if (failed)
        return -1;
    e->pending = 0;
    return 0;
}

static void forget_entry(Entry *e) {
    Py_CLEAR(e->code);
    Py_CLEAR(e->args);
    Py_CLEAR(e->shapes);
    Py_CLEAR(e->site);
    e->pending = 0;
}

/* Whether the operands args[1:] have the shapes `shapes` (errors cleared: not the same). */
static int same_shapes(PyObject *args, PyObject *shapes) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (shapes == NULL || PyTuple_GET_SIZE(shapes) != n - 1)
        return 0;
    for (Py_ssize_t k = 1; k < n; k++) {
        PyObject *shape = PyObject_GetAttr(PyTuple_GET_ITEM(args, k), shape_name);
        if (shape == NULL) {
            PyErr_Clear();
            return 0;
        }
        int same = PyObject_RichCompareBool(shape, PyTuple_GET_ITEM(shapes, k - 1), Py_EQ);
        Py_DECREF(shape);
        if (same != 1) {
            if (same < 0)
                PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

static PyObject *Repeat_call(Repeat *self, PyObject *args, PyObject *kwargs) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyFrameObject *frame;
    if (n > 0 && (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0)
            && (frame = PyEval_GetFrame()) != NULL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        int lasti = lasti_of(frame);
        Py_DECREF(code);                     /* the frame holds it: only its identity is used */
        for (int i = 0; i < SLOTS; i++) {
            Entry *e = &self->entries[i];
            if (e->code != (PyObject *)code || e->lasti != lasti)
                continue;
            PyObject *last = e->args;
            if (PyTuple_GET_SIZE(last) != n
                    || PyTuple_GET_ITEM(last, 0) != PyTuple_GET_ITEM(args, 0))
                break;                       /* another equation object: the observer's */
            int same = 1;
            for (Py_ssize_t k = 1; k < n; k++) {
                if (PyTuple_GET_ITEM(last, k) != PyTuple_GET_ITEM(args, k)) {
                    same = 0;
                    break;
                }
            }
            if (!same) {
                /* an operand's .shape may run Python that re-arms or clears this slot */
                PyObject *shapes = e->shapes;
                Py_XINCREF(shapes);
                int alike = same_shapes(args, shapes);
                Py_XDECREF(shapes);
                if (!alike)
                    break;                   /* new shapes: the observer notes them */
                if (e->site == NULL || e->code != (PyObject *)code || e->lasti != lasti)
                    break;                   /* the slot changed meanwhile: the observer's */
            }
            PyObject *site = e->site;
            Py_INCREF(site);                 /* the call may run Python that re-arms this slot */
            PyObject *result = PyObject_Call(self->original, args, NULL);
            if (result != NULL && e->site == site) {
                e->pending++;
                if (!same) {                 /* the latest operands, as the observer keeps */
                    Py_INCREF(args);
                    Py_SETREF(e->args, args);
                }
            }
            Py_DECREF(site);
            return result;
        }
    }
    return PyObject_Call(self->observer, args, kwargs);
}

static PyObject *Repeat_arm(Repeat *self, PyObject *a) {
    PyObject *frame, *args, *shapes, *site;
    if (!PyArg_ParseTuple(a, "O!O!OO:arm", &PyFrame_Type, &frame, &PyTuple_Type, &args,
                          &shapes, &site))
        return NULL;
    if (PyTuple_GET_SIZE(args) == 0) {
        PyErr_SetString(PyExc_ValueError, "arm: no arguments to compare");
        return NULL;
    }
    PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)frame);
    int lasti = lasti_of((PyFrameObject *)frame);
    Entry *e = NULL;
    for (int i = 0; i < SLOTS; i++) {
        if (self->entries[i].code == (PyObject *)code && self->entries[i].lasti == lasti) {
            e = &self->entries[i];
            break;
        }
    }
    if (e == NULL) {
        for (int i = 0; i < SLOTS && e == NULL; i++)
            if (self->entries[i].code == NULL)
                e = &self->entries[i];
        if (e == NULL) {
            e = &self->entries[self->next];
            self->next = (self->next + 1) % SLOTS;
        }
    }
    if (flush_entry(e) < 0) {
        Py_DECREF(code);
        return NULL;
    }
    forget_entry(e);
    e->code = (PyObject *)code;              /* the reference PyFrame_GetCode gave */
    e->lasti = lasti;
    Py_INCREF(args);
    e->args = args;
    if (PyTuple_Check(shapes)) {
        Py_INCREF(shapes);
        e->shapes = shapes;
    }
    Py_INCREF(site);
    e->site = site;
    Py_RETURN_NONE;
}

static PyObject *Repeat_flush(Repeat *self, PyObject *Py_UNUSED(unused)) {
    for (int i = 0; i < SLOTS; i++)
        if (flush_entry(&self->entries[i]) < 0)
            return NULL;
    Py_RETURN_NONE;
}

static PyObject *Repeat_clear(Repeat *self, PyObject *Py_UNUSED(unused)) {
    int failed = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (flush_entry(&self->entries[i]) < 0 && !failed)
            failed = 1;                      /* forget every slot all the same */
        forget_entry(&self->entries[i]);
    }
    self->next = 0;
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Repeat_new(PyTypeObject *type, PyObject *a, PyObject *kw) {
    PyObject *original, *observer;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "Repeat(original, observer) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(a, "OO:Repeat", &original, &observer))
        return NULL;
    Repeat *self = (Repeat *)type->tp_alloc(type, 0);   /* zeroed: every slot free */
    if (self == NULL)
        return NULL;
    Py_INCREF(original);
    self->original = original;
    Py_INCREF(observer);
    self->observer = observer;
    return (PyObject *)self;
}

static int Repeat_traverse(Repeat *self, visitproc visit, void *arg) {
    Py_VISIT(self->original);
    Py_VISIT(self->observer);
    for (int i = 0; i < SLOTS; i++) {
        Py_VISIT(self->entries[i].args);
        Py_VISIT(self->entries[i].shapes);
        Py_VISIT(self->entries[i].site);
    }
    return 0;
}

static int Repeat_tp_clear(Repeat *self) {
    Py_CLEAR(self->original);
    Py_CLEAR(self->observer);
    for (int i = 0; i < SLOTS; i++)
        forget_entry(&self->entries[i]);
    return 0;
}

static void Repeat_dealloc(Repeat *self) {
    PyObject_GC_UnTrack(self);
    Repeat_tp_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The same as calling the Repeat, as a builtin method: what the wrapper calls, a C function
 * that torch.compile can be told to trace as its stand-in (it cannot be told so of an
 * object's __call__). */
static PyObject *Repeat_call_method(Repeat *self, PyObject *args, PyObject *kwargs) {
    return Repeat_call(self, args, kwargs);
}

static PyMethodDef Repeat_methods[] = {
    {"call", (PyCFunction)(void (*)(void))Repeat_call_method, METH_VARARGS | METH_KEYWORDS,
     "call(*args, **kwargs): the same as calling the Repeat"},
    {"arm", (PyCFunction)Repeat_arm, METH_VARARGS,
     "arm(frame, args, shapes, site): count the repeats of this site's call here"},
    {"flush", (PyCFunction)Repeat_flush, METH_NOARGS,
     "flush(): add the calls counted here to their sites' count"},
    {"clear", (PyCFunction)Repeat_clear, METH_NOARGS,
     "clear(): flush, then forget every site"},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject RepeatType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "einsum_magic.cell._observe.Repeat",
    .tp_doc = "The repeated calls of known einsum sites, counted in C (see the module).",
    .tp_basicsize = sizeof(Repeat),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Repeat_new,
    .tp_dealloc = (destructor)Repeat_dealloc,
    .tp_traverse = (traverseproc)Repeat_traverse,
    .tp_clear = (inquiry)Repeat_tp_clear,
    .tp_call = (ternaryfunc)Repeat_call,
    .tp_methods = Repeat_methods,
};

/* -- ImportHook ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *original;          /* builtins.__import__ as it was */
    PyObject *after;             /* called after an import that may have brought news */
    PyObject *modules;           /* sys.modules */
    Py_ssize_t seen;             /* len(sys.modules) when after() last ran */
    int waiting;                 /* something is awaited */
    int pending;                 /* an awaited module is importing right now */
    int builtin;                 /* original is the builtin __import__ itself */
} ImportHook;

/* original(*args, **kwargs); for the builtin __import__ and the five arguments an import
 * statement passes, what the builtin does once it has parsed them (an import statement
 * calls it so when no hook is set). */
static PyObject *import_with(ImportHook *self, PyObject *args, PyObject *kwargs) {
    if (self->builtin && PyTuple_GET_SIZE(args) == 5
            && (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0)
            && PyLong_CheckExact(PyTuple_GET_ITEM(args, 4))) {
        long level = PyLong_AsLong(PyTuple_GET_ITEM(args, 4));
        if (level == -1 && PyErr_Occurred())
            PyErr_Clear();                   /* out of range: the builtin says so */
        else if (level >= INT_MIN && level <= INT_MAX)
            return PyImport_ImportModuleLevelObject(
                PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1), PyTuple_GET_ITEM(args, 2),
                PyTuple_GET_ITEM(args, 3), (int)level);
    }
    return PyObject_Call(self->original, args, kwargs);
}

static PyObject *ImportHook_call(ImportHook *self, PyObject *args, PyObject *kwargs) {
    PyObject *module = import_with(self, args, kwargs);
    if (module == NULL || !self->waiting)
        return module;
    if (!self->pending && PyDict_Check(self->modules)
            && PyDict_GET_SIZE(self->modules) == self->seen)
        return module;
    PyObject *r = PyObject_CallNoArgs(self->after);
    if (r == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    Py_DECREF(r);
    return module;
}

static PyObject *ImportHook_set(ImportHook *self, PyObject *a) {
    int waiting, pending;
    Py_ssize_t seen;
    if (!PyArg_ParseTuple(a, "ppn:set", &waiting, &pending, &seen))
        return NULL;
    self->waiting = waiting;
    self->pending = pending;
    self->seen = seen;
    Py_RETURN_NONE;
}

static PyObject *ImportHook_new(PyTypeObject *type, PyObject *a, PyObject *kw) {
    PyObject *original, *after;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "ImportHook(original, after) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(a, "OO:ImportHook", &original, &after))
        return NULL;
    PyObject *modules = PyImport_GetModuleDict();       /* borrowed */
    ImportHook *self = (ImportHook *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(original);
    self->original = original;
    Py_INCREF(after);
    self->after = after;
    Py_INCREF(modules);
    self->modules = modules;
    self->waiting = 1;           /* until set(): after() decides at the first import */
    PyObject *builtins = PyEval_GetBuiltins();          /* borrowed */
    self->builtin = builtins != NULL
        && PyDict_GetItemString(builtins, "__import__") == original
        && PyCFunction_Check(original);
    return (PyObject *)self;
}

static int ImportHook_traverse(ImportHook *self, visitproc visit, void *arg) {
    Py_VISIT(self->original);
    Py_VISIT(self->after);
    Py_VISIT(self->modules);
    return 0;
}

static int ImportHook_tp_clear(ImportHook *self) {
    Py_CLEAR(self->original);
    Py_CLEAR(self->after);
    Py_CLEAR(self->modules);
    return 0;
}

static void ImportHook_dealloc(ImportHook *self) {
    PyObject_GC_UnTrack(self);
    ImportHook_tp_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef ImportHook_methods[] = {
    {"set", (PyCFunction)ImportHook_set, METH_VARARGS,
     "set(waiting, pending, seen): what the next imports compare with"},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject ImportHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "einsum_magic.cell._observe.ImportHook",
    .tp_doc = "builtins.__import__ while a cell is observed (see the module).",
    .tp_basicsize = sizeof(ImportHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = ImportHook_new,
    .tp_dealloc = (destructor)ImportHook_dealloc,
    .tp_traverse = (traverseproc)ImportHook_traverse,
    .tp_clear = (inquiry)ImportHook_tp_clear,
    .tp_call = (ternaryfunc)ImportHook_call,
    .tp_methods = ImportHook_methods,
};

/* -- the module ---------------------------------------------------------------------- */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "einsum_magic.cell._observe",
    .m_doc = "The observer's two hot paths in C: Repeat and ImportHook "
             "(see einsum_magic.cell.capture).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__observe(void) {
    shape_name = PyUnicode_InternFromString("shape");
    count_name = PyUnicode_InternFromString("count");
    if (shape_name == NULL || count_name == NULL || PyType_Ready(&RepeatType) < 0
            || PyType_Ready(&ImportHookType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RepeatType);
    if (PyModule_AddObject(m, "Repeat", (PyObject *)&RepeatType) < 0) {
        Py_DECREF(&RepeatType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ImportHookType);
    if (PyModule_AddObject(m, "ImportHook", (PyObject *)&ImportHookType) < 0) {
        Py_DECREF(&ImportHookType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
