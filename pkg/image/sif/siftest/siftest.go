// Package siftest writes SIF files for tests, with Apptainer's own library
// (sif.CreateContainer), as `apptainer build` lays them out: a root
// partition and, optionally, the definition file, labels and other data
// objects.
package siftest

import (
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/apptainer/sif/v2/pkg/sif"
)

// Object is one data object of a SIF.
type Object struct {
	Type sif.DataType
	Data io.Reader
	// For partitions (Type sif.DataPartition): the file system, the
	// partition's type and architecture (Go's name; "" is the running
	// one's).
	FS   sif.FSType
	Part sif.PartType
	Arch string
}

// Root is a primary system partition of file system fs holding data (a
// squashfs file for FsSquash).
func Root(fs sif.FSType, data io.Reader) Object {
	return Object{Type: sif.DataPartition, Data: data, FS: fs, Part: sif.PartPrimSys}
}

// Overlay is an overlay partition (ext3, as `apptainer overlay create
// --sif` makes).
func Overlay(data io.Reader) Object {
	return Object{Type: sif.DataPartition, Data: data, FS: sif.FsExt3, Part: sif.PartOverlay}
}

// Deffile is a definition file object.
func Deffile(def string) Object {
	return Object{Type: sif.DataDeffile, Data: strings.NewReader(def)}
}

// Labels is a labels (JSON) object.
func Labels(json string) Object {
	return Object{Type: sif.DataLabels, Data: strings.NewReader(json)}
}

// Write writes a SIF holding objs, in order, at path (0644, replaced).
func Write(path string, objs ...Object) error {
	dis := make([]sif.DescriptorInput, 0, len(objs))
	for _, o := range objs {
		var opts []sif.DescriptorInputOpt
		if o.Type == sif.DataPartition {
			arch := o.Arch
			if arch == "" {
				arch = runtime.GOARCH
			}
			opts = append(opts, sif.OptPartitionMetadata(o.FS, o.Part, arch))
		}
		di, err := sif.NewDescriptorInput(o.Type, o.Data, opts...)
		if err != nil {
			return err
		}
		dis = append(dis, di)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	img, err := sif.CreateContainer(f, sif.OptCreateWithDescriptors(dis...),
		sif.OptCreateWithLaunchScript("#!/usr/bin/env run-singularity\n"))
	if err != nil {
		f.Close()
		return err
	}
	return img.UnloadContainer() // closes f
}

// WriteSquashfs writes a SIF whose root is the squashfs file sqfs, as
// `apptainer build` does, with a definition file and labels after it.
func WriteSquashfs(path, sqfs string) error {
	f, err := os.Open(sqfs)
	if err != nil {
		return err
	}
	defer f.Close()
	return Write(path, Deffile("Bootstrap: docker\nFrom: debian:12\n"), Labels(`{"org.label-schema.schema-version":"1.0"}`),
		Root(sif.FsSquash, f))
}
