package host

import (
	"errors"
	"io"

	"github.com/strata-ml/strata/plugin"
)

// EncodeInput returns the bytes an input sends and, for a file's bytes,
// its file name (tests only).
func EncodeInput(in Input) ([]byte, string, error) {
	if in.encoding == plugin.EncodingPath {
		return nil, "", errors.New("a path input sends nothing")
	}
	r, err := in.open()
	if err != nil {
		return nil, "", err
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	b, err := io.ReadAll(r)
	name := ""
	if in.encoding == plugin.EncodingFile {
		name = in.fileName
	}
	return b, name, err
}
