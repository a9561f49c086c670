package main

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// IDX is the format of the MNIST files (yann.lecun.com/exdb/mnist): a
// big-endian header of two zero bytes, a type byte (0x08: unsigned bytes),
// the number of dimensions and each dimension as a uint32, then the
// values row-major.
const idxUnsignedByte = 0x08

// Limits on what a file may claim, so that a corrupt or hostile header
// cannot make the reader allocate without bound: MNIST itself has 60,000
// images of 28 x 28.
const (
	maxItems     = 100_000
	maxItemBytes = 64 * 64
)

// idx is an IDX file of unsigned bytes: Items items of ItemBytes bytes
// each (the product of the dimensions after the first; 1 for labels),
// Data holding them row-major. Dims are the dimensions as the header
// gives them.
type idx struct {
	Dims      []int
	Items     int
	ItemBytes int
	Data      []byte
}

// readIDX reads the first limit items (all when limit <= 0 or more than
// the file has) of a gzip-compressed IDX file of unsigned bytes with
// wantDims dimensions. A bad magic, a claimed size above maxItems or
// maxItemBytes, or a file shorter than its header says is an error naming
// path.
func readIDX(path string, wantDims, limit int) (*idx, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer zr.Close()
	m, err := decodeIDX(zr, wantDims, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// decodeIDX is readIDX on the uncompressed bytes of r.
func decodeIDX(r io.Reader, wantDims, limit int) (*idx, error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, fmt.Errorf("IDX header: %w", err)
	}
	if magic[0] != 0 || magic[1] != 0 || magic[2] != idxUnsignedByte {
		return nil, fmt.Errorf("IDX magic %02x%02x%02x%02x, want 0000%02x%02x (unsigned bytes, %d dimensions)",
			magic[0], magic[1], magic[2], magic[3], idxUnsignedByte, wantDims, wantDims)
	}
	if int(magic[3]) != wantDims {
		return nil, fmt.Errorf("IDX has %d dimensions, want %d", magic[3], wantDims)
	}
	m := &idx{Dims: make([]int, wantDims), ItemBytes: 1}
	for i := range m.Dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, fmt.Errorf("IDX dimension %d: %w", i, err)
		}
		m.Dims[i] = int(d)
	}
	if m.Dims[0] > maxItems {
		return nil, fmt.Errorf("IDX claims %d items, more than the %d this reader accepts", m.Dims[0], maxItems)
	}
	for _, d := range m.Dims[1:] {
		if d == 0 || d > maxItemBytes || m.ItemBytes*d > maxItemBytes {
			return nil, fmt.Errorf("IDX item of dimensions %v: want each between 1 and %d bytes in all", m.Dims[1:], maxItemBytes)
		}
		m.ItemBytes *= d
	}
	m.Items = m.Dims[0]
	if limit > 0 && limit < m.Items {
		m.Items = limit
	}
	m.Data = make([]byte, m.Items*m.ItemBytes)
	if n, err := io.ReadFull(r, m.Data); err != nil {
		return nil, fmt.Errorf("IDX truncated: %d of the %d bytes of the first %d items: %w", n, len(m.Data), m.Items, err)
	}
	return m, nil
}
