package scan

import (
	"context"
	"errors"
	"fmt"

	"github.com/layerbridge/layerbridge/clairv2"
	"github.com/layerbridge/layerbridge/clairv4"
)

// DetectAPI returns which API c speaks, "v4" or "v2". c.API is APIAuto
// (probe v4, then v2), APIv4 or APIv2; an explicit API that Clair does not
// speak is an *APIMismatchError when Clair speaks the other one. A 401 is
// an *AuthError saying whether the v4 client sent a token.
func DetectAPI(ctx context.Context, c Clair) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	u, want, v4, v2 := c.URL, c.API, c.V4, c.V2
	withPSK := v4.Issuer() != ""
	probeV4 := func() (bool, error) {
		err := v4.Probe(ctx)
		switch {
		case err == nil:
			return true, nil
		case clairv4.IsUnauthorized(err):
			return true, &AuthError{URL: redact(u), Rejected: withPSK, Err: err}
		case clairv4.IsUnreachable(err):
			return false, &ClairUnreachableError{URL: redact(u), Err: err}
		case timedOut(ctx, err):
			return false, &ClairUnreachableError{URL: redact(u), Err: fmt.Errorf("no answer before the probe's deadline: %w", err)}
		}
		return false, err
	}
	probeV2 := func() (bool, error) {
		err := v2.Probe(ctx)
		switch {
		case err == nil:
			return true, nil
		case clairv2.IsUnreachable(err):
			return false, &ClairUnreachableError{URL: redact(u), Err: err}
		case timedOut(ctx, err):
			return false, &ClairUnreachableError{URL: redact(u), Err: fmt.Errorf("no answer before the probe's deadline: %w", err)}
		}
		return false, err
	}
	switch orAuto(want) {
	case APIv4:
		ok, err := probeV4()
		if ok || isUnreachable(err) {
			return APIv4, err
		}
		if ok2, _ := probeV2(); ok2 {
			return "", &APIMismatchError{URL: redact(u), Want: APIv4, Found: APIv2}
		}
		return "", &NoClairError{URL: redact(u), Err: err}
	case APIv2:
		ok, err := probeV2()
		if ok || isUnreachable(err) {
			return APIv2, err
		}
		if ok4, _ := probeV4(); ok4 {
			return "", &APIMismatchError{URL: redact(u), Want: APIv2, Found: APIv4}
		}
		return "", &NoClairError{URL: redact(u), Err: err}
	case APIAuto:
		ok, err := probeV4()
		if ok || isUnreachable(err) {
			return APIv4, err
		}
		ok2, err2 := probeV2()
		if ok2 {
			return APIv2, nil
		}
		return "", &NoClairError{URL: redact(u), Err: fmt.Errorf("v4 probe: %v; v2 probe: %w", err, err2)}
	default:
		return "", fmt.Errorf("unknown clair api %q: want auto, v4 or v2", want)
	}
}

// timedOut reports a probe that ctx's deadline cut short: Clair accepted
// the connection (or never completed it) but did not answer in time.
func timedOut(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded)
}

func isUnreachable(err error) bool {
	_, ok := err.(*ClairUnreachableError)
	return ok
}
