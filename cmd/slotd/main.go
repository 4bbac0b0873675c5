// Command slotd will serve the slot allocation API. The HTTP edge is not
// built yet; until it is, this binary says so and exits instead of
// pretending to serve.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "slotd: the HTTP server is not built yet; the allocator and its tests are (make test)")
	os.Exit(2)
}
