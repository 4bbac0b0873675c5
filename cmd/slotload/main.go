// Command slotload will drive load scenarios against slotd. Not built yet.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "slotload: not built yet")
	os.Exit(2)
}
