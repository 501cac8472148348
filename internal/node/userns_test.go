package node

import "testing"

// A user's namespace for idmapped mounts is made once and shared; another
// user's is another.
func TestSharedUserNS(t *testing.T) {
	requireRoot(t)
	a, releaseA, err := sharedUserNS(4242, 4243)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseA()
	b, releaseB, err := sharedUserNS(4242, 4243)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseB()
	c, releaseC, err := sharedUserNS(4244, 4243)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseC()
	if a != b || a == c {
		t.Errorf("same user: %p %p; another: %p", a, b, c)
	}
}
