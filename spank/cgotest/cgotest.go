// Package cgotest compiles the plugin's pure C sources (spank/args.c,
// config.c, proto.c, client.c) through cgo so that Go tests can drive them.
// The plugin itself is built by the Makefile with no Go in it; this package
// exists only for tests (cgo cannot be used from _test.go files).
package cgotest

/*
#cgo CFLAGS: -I${SRCDIR}/.. -Wall -Wextra -Werror -Wno-unused-parameter
#include <stdlib.h>
#include "../args.c"
#include "../config.c"
#include "../proto.c"
#include "../client.c"
*/
import "C"

import (
	"errors"
	"syscall"
	"unsafe"
)

// Mount is one parsed --container-mounts entry.
type Mount struct{ Src, Dst, Flags string }

// Args mirrors struct phpc_args.
type Args struct {
	Name, NameMode, Save, Unshare string
	Image, Workdir                string
	Mounts                        []Mount
	EnvNames                      []string
	Writable                      int
	MountHome                     int
	Hooks                         string
}

// Option is one option as the plugin's callback receives it.
type Option struct {
	Name, Value string
}

// ParseOptions feeds options to the C setters in order and returns the
// result, or the C error text of the first failure.
func ParseOptions(opts ...Option) (Args, error) {
	var a C.struct_phpc_args
	C.phpc_args_init(&a)
	defer C.phpc_args_free(&a)
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	*errbuf = 0

	for _, o := range opts {
		v := C.CString(o.Value)
		var rc C.int
		switch o.Name {
		case "image":
			rc = C.phpc_args_set_image(&a, v, errbuf, 512)
		case "workdir":
			rc = C.phpc_args_set_workdir(&a, v, errbuf, 512)
		case "mounts":
			rc = C.phpc_args_add_mounts(&a, v, errbuf, 512)
		case "env":
			rc = C.phpc_args_add_env_names(&a, v, errbuf, 512)
		case "name":
			rc = C.phpc_args_set_name(&a, v, errbuf, 512)
		case "save":
			rc = C.phpc_args_set_save(&a, v, errbuf, 512)
		case "unshare":
			rc = C.phpc_args_set_unshare(&a, v, errbuf, 512)
		case "hooks":
			rc = C.phpc_args_set_hooks(&a, v, errbuf, 512)
		case "writable", "readonly":
			name := C.CString("--container-" + o.Name)
			rc = C.phpc_args_set_flag(&a.writable, boolC(o.Name == "writable"), name, errbuf, 512)
			C.free(unsafe.Pointer(name))
		default:
			panic("unknown option " + o.Name)
		}
		C.free(unsafe.Pointer(v))
		if rc != 0 {
			return Args{}, errors.New(C.GoString(errbuf))
		}
	}
	out := Args{Writable: int(a.writable), MountHome: int(a.mount_home)}
	if a.image != nil {
		out.Image = C.GoString(a.image)
	}
	if a.workdir != nil {
		out.Workdir = C.GoString(a.workdir)
	}
	for dst, src := range map[*string]*C.char{&out.Name: a.name, &out.NameMode: a.name_mode, &out.Save: a.save, &out.Unshare: a.unshare} {
		if src != nil {
			*dst = C.GoString(src)
		}
	}
	for _, m := range unsafe.Slice(a.mounts, a.n_mounts) {
		mt := Mount{Src: C.GoString(m.src), Dst: C.GoString(m.dst)}
		if m.flags != nil {
			mt.Flags = C.GoString(m.flags)
		}
		out.Mounts = append(out.Mounts, mt)
	}
	if a.hooks != nil {
		out.Hooks = C.GoString(a.hooks)
	}
	for _, n := range unsafe.Slice(a.env_names, a.n_env_names) {
		out.EnvNames = append(out.EnvNames, C.GoString(n))
	}
	return out, nil
}

func boolC(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Config mirrors struct phpc_config.
type Config struct {
	Socket                                               string
	ContainerMountHome, ContainerWritable, SbatchSupport bool
	ExecuteEntrypoint, ScopeGlobal                       bool
	Timeout                                              int
}

// ParseConfig runs the plugstack.conf argument parser over the defaults.
func ParseConfig(args ...string) (Config, error) {
	var c C.struct_phpc_config
	C.phpc_config_defaults(&c)
	argv := make([]*C.char, len(args)+1)
	for i, a := range args {
		argv[i] = C.CString(a)
		defer C.free(unsafe.Pointer(argv[i]))
	}
	cargv := (**C.char)(C.malloc(C.size_t(len(argv)) * C.size_t(unsafe.Sizeof(argv[0]))))
	defer C.free(unsafe.Pointer(cargv))
	copy(unsafe.Slice(cargv, len(argv)), argv)
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	if C.phpc_config_parse(&c, C.int(len(args)), cargv, errbuf, 512) != 0 {
		return Config{}, errors.New(C.GoString(errbuf))
	}
	return Config{
		Socket:             C.GoString(&c.socket[0]),
		ContainerMountHome: c.container_mount_home != 0,
		ContainerWritable:  c.container_writable != 0,
		SbatchSupport:      c.sbatch_support != 0,
		ExecuteEntrypoint:  c.execute_entrypoint != 0,
		ScopeGlobal:        c.scope_global != 0,
		Timeout:            int(c.timeout),
	}, nil
}

// Field is a key/value pair of a protocol message.
type Field struct{ Key, Value string }

// EncodeC builds a frame with the C encoder.
func EncodeC(typ uint8, fields []Field) ([]byte, error) {
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, C.uint8_t(typ))
	defer C.phpc_msg_free(&m)
	for _, f := range fields {
		k, v := C.CString(f.Key), C.CString(f.Value)
		rc := C.phpc_msg_add(&m, k, v)
		C.free(unsafe.Pointer(k))
		C.free(unsafe.Pointer(v))
		if rc != 0 {
			return nil, errors.New("phpc_msg_add failed")
		}
	}
	hdr := make([]byte, C.PHPC_FRAME_HEADER)
	C.phpc_msg_header(&m, (*C.uchar)(unsafe.Pointer(&hdr[0])))
	return append(hdr, C.GoBytes(unsafe.Pointer(m.body), C.int(m.len))...), nil
}

// DecodeC parses a frame with the C decoder.
func DecodeC(frame []byte) (uint8, []Field, error) {
	if len(frame) < C.PHPC_FRAME_HEADER {
		return 0, nil, errors.New("short frame")
	}
	var typ C.uint8_t
	var n C.size_t
	if C.phpc_parse_header((*C.uchar)(unsafe.Pointer(&frame[0])), &typ, &n) != 0 {
		return 0, nil, errors.New("bad header")
	}
	body := frame[C.PHPC_FRAME_HEADER:]
	if int(n) != len(body) {
		return 0, nil, errors.New("length mismatch")
	}
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, typ)
	defer C.phpc_msg_free(&m)
	cbody := C.CBytes(body)
	defer C.free(cbody)
	if C.phpc_msg_set_body(&m, (*C.char)(cbody), n) != 0 {
		return 0, nil, errors.New("bad body")
	}
	var fields []Field
	var off C.size_t
	var k, v *C.char
	for C.phpc_msg_next(&m, &off, &k, &v) == 1 {
		fields = append(fields, Field{C.GoString(k), C.GoString(v)})
	}
	return uint8(typ), fields, nil
}

// SendC sends a frame on fd with the C client.
func SendC(fd int, typ uint8, fields []Field) error {
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, C.uint8_t(typ))
	defer C.phpc_msg_free(&m)
	for _, f := range fields {
		k, v := C.CString(f.Key), C.CString(f.Value)
		C.phpc_msg_add(&m, k, v)
		C.free(unsafe.Pointer(k))
		C.free(unsafe.Pointer(v))
	}
	if rc, err := C.phpc_send(C.int(fd), &m); rc != 0 {
		return err
	}
	return nil
}

// RecvC receives a frame on fd with the C client, with any passed fds.
func RecvC(fd int, timeoutMS int) (uint8, []Field, []int, error) {
	var m C.struct_phpc_msg
	C.phpc_msg_init(&m, 0)
	defer C.phpc_msg_free(&m)
	fds := make([]C.int, 8)
	var nfds C.size_t
	rc, err := C.phpc_recv(C.int(fd), &m, C.int(timeoutMS), &fds[0], 8, &nfds)
	var got []int
	for _, f := range fds[:nfds] {
		got = append(got, int(f))
	}
	if rc != 0 {
		if err == nil {
			err = syscall.EIO
		}
		return 0, nil, got, err
	}
	var fields []Field
	var off C.size_t
	var k, v *C.char
	for C.phpc_msg_next(&m, &off, &k, &v) == 1 {
		fields = append(fields, Field{C.GoString(k), C.GoString(v)})
	}
	return uint8(m._type), fields, got, nil
}

// Connect runs phpc_connect and returns its fd or its error text.
func Connect(path string) (int, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	errbuf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errbuf))
	fd := C.phpc_connect(p, errbuf, 512)
	if fd < 0 {
		return -1, errors.New(C.GoString(errbuf))
	}
	return int(fd), nil
}
