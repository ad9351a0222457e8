package agentpkg

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// download streams pkg.URL through the verifier and extractor in one pass; tee, when set, gets a
// copy of the raw bytes (the cache). teeErr reports a failed copy without failing the install.
func (o *Options) download(ctx context.Context, pkg Package, newRoot string, own owner, tee *os.File) (sum string, teeErr error, err error) {
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return "", nil, dirError(filepath.Dir(newRoot), err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := newFetcher(ctx, o, pkg.URL)
	defer f.Close()
	o.logger().Info("downloading agent package", "version", pkg.Version, "platform", pkg.Platform, "url", f.shown)
	prog := startProgress(o.logger(), o.Progress, o.progressInterval(), pkg.Version, f.shown, f.offset.Load, f.size.Load)
	var w io.Writer
	if tee != nil {
		w = writerFunc(func(b []byte) (int, error) {
			if teeErr == nil {
				if _, err := tee.Write(b); err != nil {
					teeErr = fmt.Errorf("write cache file %s: %w", tee.Name(), err)
				}
			}
			return len(b), nil
		})
	}
	h, err := extractStream(ctx, cancel, f, newRoot, own, w, o.limits())
	prog.end()
	sum = hex.EncodeToString(h.Sum(nil))
	if err != nil {
		return sum, teeErr, err
	}
	if want := normHash(pkg.SHA256); want != "" && want != sum {
		return sum, teeErr, fmt.Errorf("%w: the download's SHA-256 is %s but the expected hash is %s; the package is corrupt or was tampered with", ErrHashMismatch, sum, want)
	}
	o.logger().Info("agent package downloaded and verified", "version", pkg.Version, "bytes", f.offset.Load(), "sha256", sum, "verified", pkg.SHA256 != "")
	return sum, teeErr, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// The stages hand each other chunks of pipeChunk bytes, at most pipeDepth queued per stage: enough
// to absorb their jitter. (It was 16 chunks of 256 KiB, 9 MiB in the two pipes, for no measurable
// speed; the entrypoint's peak RSS during a cold install is bench figure 6.)
const (
	pipeChunk = 64 << 10
	pipeDepth = 4
)

// extractStream runs src through three overlapping stages: read+hash(+tee), gunzip, untar+write.
// The returned hash covers exactly the bytes read from src (read no further than that when
// extraction fails); it is valid once extractStream returns.
func extractStream(ctx context.Context, cancel func(), src io.Reader, root string, own owner, tee io.Writer, lim limits) (hash.Hash, error) {
	h := sha256.New()
	raw := newChunkPipe(src, pipeChunk, pipeDepth, func(b []byte) error {
		h.Write(b)
		if tee != nil {
			tee.Write(b)
		}
		return nil
	})
	var dec *chunkPipe
	defer func() {
		cancel() // unblocks a producer waiting in the network
		if dec != nil {
			dec.Close()
		}
		raw.Close()
	}()
	zr, err := gzip.NewReader(raw)
	if err != nil {
		return h, readError(err)
	}
	// The decompressed stream is capped too: tar headers and padding add at most 1.5 KiB per entry.
	var zsrc io.Reader = zr
	if lim.bytes > 0 {
		zsrc = &capReader{r: zr, left: lim.bytes + int64(max(lim.entries, 0))*1536 + 1<<20}
	}
	dec = newChunkPipe(zsrc, pipeChunk, pipeDepth, nil)
	if err := newExtractor(root, own, lim).extract(ctx, dec); err != nil {
		return h, err
	}
	// The rest of the stream (tar padding, gzip trailer with its CRC) must be read too: the
	// hash covers every byte and the CRC check happens at the end.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return h, readError(err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return h, readError(err)
	}
	return h, nil
}

// capReader fails once more than left bytes were read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w: the archive decompresses to more than its limit (a decompression bomb?)", ErrTooLarge)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// readError says whether reading failed because of the transfer or because of the content.
func readError(err error) error {
	var de *downloadError
	var se *HTTPStatusError
	var ce flate.CorruptInputError
	switch {
	case errors.As(err, &de) || errors.As(err, &se) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("read package: %w", err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) ||
		errors.As(err, &ce) || errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrInsecurePath):
		return fmt.Errorf("the archive is truncated or corrupt: %w", err)
	}
	return fmt.Errorf("read package: %w", err)
}
