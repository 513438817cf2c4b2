"""What a browser test reads of how text was drawn: shared by the admin's and the Oscar dashboard's
right-to-left tests (tests/test_right_to_left_pages.py needs the test app, tests/oscar cannot import it)."""

# Each visible character of an element's text, in the text's (logical) order, with where it was drawn.
CHARACTERS = """(element) => {
  const found = [], walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i++) {
      if (!node.data[i].trim()) continue;
      const range = document.createRange(); range.setStart(node, i); range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      found.push({c: node.data[i], x: box.x, w: box.width, y: Math.round(box.y)});
    }
  }
  return found;
}"""
