package asuser

import (
	"errors"
	"reflect"
	"syscall"
	"testing"
)

func TestRequestFieldsRoundTrip(t *testing.T) {
	for _, req := range []request{
		{Op: opOpen, Wants: []Want{{Path: "/a b/\"ü\n", Flags: syscall.O_RDONLY, Optional: true}, {Path: "/f", Flags: syscall.O_CREAT | syscall.O_WRONLY, Mode: 0o644, Regular: true}}},
		{Op: opOpen},
		{Op: opUnlink, Path: "/tmp/x"},
		{Op: opDial, Path: "/run/docker.sock"},
		{Op: opLayout, Path: ""},
	} {
		b, err := req.encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		if !reflect.DeepEqual(got, req) {
			t.Errorf("round trip of %+v gave %+v", req, got)
		}
	}
}

func TestRequestRefusesANulInAPath(t *testing.T) {
	for _, req := range []request{
		{Op: opOpen, Wants: []Want{{Path: "/ok"}, {Path: "/a\x00/etc/shadow"}}},
		{Op: opUnlink, Path: "/tmp/a\x00b"},
	} {
		if _, err := req.encode(); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%+v: err %v, want EINVAL", req, err)
		}
	}
}

func TestDecodeRequestRefusesMalformedFields(t *testing.T) {
	for _, in := range []string{"", "open", "open\x001\x000\x000\x000\x00", "open\x00x\x000\x000\x000\x00/p\x00", "open\x00-1\x000\x000\x000\x00/p\x00", "unlink\x00", "unlink\x00/a\x00/b\x00"} {
		if r, err := decodeRequest([]byte(in)); err == nil {
			t.Errorf("%q: decoded as %+v, want an error", in, r)
		}
	}
}
