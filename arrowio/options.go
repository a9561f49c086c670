package arrowio

import "github.com/apache/arrow-go/v18/arrow/memory"

// Option configures ReadModel and ReadModelFrom.
type Option func(*config)

type config struct {
	alloc memory.Allocator
	mmap  bool
}

func newConfig(opts []Option) *config {
	cfg := &config{alloc: memory.DefaultAllocator, mmap: true}
	for _, o := range opts {
		if o != nil {
			o(cfg)
		}
	}
	return cfg
}

// WithAllocator sets the allocator for the Arrow buffers arrow-go allocates
// while reading (decompressed bodies, dictionaries, record batch data). Every
// such buffer is released before the read returns: the returned Model holds
// only Go memory. The default is memory.DefaultAllocator.
func WithAllocator(mem memory.Allocator) Option {
	return func(c *config) {
		if mem != nil {
			c.alloc = mem
		}
	}
}

// WithMmap sets whether ReadModel memory-maps the file (the default, true)
// or reads it into memory first. Mapping avoids holding a second copy of a
// large checkpoint; reading is safer on network file systems where another
// process may truncate the file while it is mapped.
func WithMmap(enabled bool) Option {
	return func(c *config) { c.mmap = enabled }
}
