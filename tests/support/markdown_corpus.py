"""Answers written the way chat models write them, for tests of where streamed Markdown may be cut.

Each exercises what the loopback server's generator does not: nested and loose lists, numbered
steps with code inside the items, setext headings, ~~~ and longer fences, indented code, quotes
with code, HTML-looking text, display math, emphasis across lines, lazy continuation lines.
"""

from __future__ import annotations

INSTALL_STEPS = """\
To get started with **FastAPI**, follow these steps:

1. **Create a virtual environment**

   ```bash
   python -m venv .venv
   source .venv/bin/activate
   ```

2. **Install the packages**

   ```bash
   pip install fastapi "uvicorn[standard]"
   ```

   If you are behind a proxy, set `HTTPS_PROXY` first.

3. **Write the app** in `main.py`:

   ```python
   from fastapi import FastAPI

   app = FastAPI()


   @app.get("/items/{item_id}")
   def read_item(item_id: int, q: str | None = None):
       return {"item_id": item_id, "q": q}
   ```

4. **Run it**:
   ```bash
   uvicorn main:app --reload
   ```
5. Open <http://127.0.0.1:8000/docs> in your browser.

That's it! The interactive docs are generated from your type hints.
"""

COMPARISON = """\
## Lists vs. tuples in Python

Both are *sequences*, but they differ in a few important ways:

| Feature | `list` | `tuple` |
|:--------|:------:|--------:|
| Mutable | Yes | No |
| Hashable | No | Yes (if items are) |
| Syntax | `[1, 2]` | `(1, 2)` |
| Typical use | homogeneous collections | records |

### When to use which

- Use a **list** when:
  - you need to add or remove items
  - the order may change
- Use a **tuple** when:
  - the data is a fixed record, e.g. `(x, y)`
  - you want to use it as a dictionary key

> **Note:** a tuple containing a list is *not* hashable:
> `hash((1, [2]))` raises `TypeError`.

In short: lists for collections, tuples for records.
"""

MATH = """\
The **softmax** function turns a vector of logits into probabilities:

$$
\\sigma(z)_i = \\frac{e^{z_i}}{\\sum_{j=1}^{K} e^{z_j}}

\\quad \\text{for } i = 1, \\dots, K
$$

Each output is in $(0, 1)$ and the outputs sum to $1$. In code:

```python
import numpy as np

def softmax(z):
    e = np.exp(z - z.max())  # subtract the max for numerical stability
    return e / e.sum()
```

The *cross-entropy* loss is then
\\[
L = -\\sum_i y_i \\log \\sigma(z)_i
\\]
which is what you minimise when training a classifier.
"""

NESTED_FENCES = """\
Here is how to write a code block *inside* Markdown documentation:

````markdown
# My project

Install it:

```bash
pip install my-project
```
````

And with tildes, which lets the inner block use backticks freely:

~~~~text
```
not a fence here
```
~~~~

~~~python
print("tilde fences work too")
~~~
Done.
"""

SETEXT_AND_RULES = """\
Release notes
=============

Version 2.0 brings a few breaking changes.

Breaking changes
----------------

* The `config` argument is now keyword-only.
* `load()` returns a `Result` instead of a dict.
+ Plugins must declare an `api_version`.

---

Migration
---------
Most code needs only two edits:

    # before
    load("app.toml", True)
    # after
    load("app.toml", strict=True)

***
Questions? Open an issue.
"""

LOOSE_LIST = """\
Here are five tips for writing clearer Python:

1. **Use descriptive names.** A variable called `d` tells the reader nothing; `deadline` does.

2. **Keep functions short.** If a function does not fit on a screen, it probably does more than
one thing.

3. **Prefer early returns.** They keep the happy path unindented:

   ```python
   def parse(text):
       if not text:
           return None
       return text.split(",")
   ```

4. **Write docstrings for public functions.** Say *what* and *why*, not *how*.

5. **Let tools do the formatting.** Run `ruff format` and stop arguing about commas.

Following these makes code reviews faster for everyone.
"""

HTML_LOOKING = """\
In HTML, a collapsible section looks like this:

<details>
<summary>Click to expand</summary>

Hidden *Markdown* content.

</details>

Generic types in Java are written like `List<String>`, and in prose people write List<T> or
Map<K, V> without backticks. A <br> tag breaks a line; an <!-- HTML comment --> is invisible.

<!--
A comment that spans

several lines, with a blank line inside.
-->

<div align="center">
  <b>centered</b>
</div>

After the HTML, ordinary Markdown again.
"""

EMPHASIS_AND_QUOTES = """\
Some *emphasis that starts here
and ends on the next line*, and **strong text
that also spans lines**.

> A quote with a list:
> - first
> - second
>
> And a code block:
> ```sql
> SELECT * FROM users;
> ```
lazy continuation of the quote's paragraph? No: the fence closed it.

> Another quote
continued lazily on this line.

Final words with a trailing backslash\\
and a hard break.
"""

TIGHT_STEPS = """\
To reset a Git branch to match the remote:
1. Fetch the latest state: `git fetch origin`
2. Check out your branch: `git checkout main`
3. Reset it hard: `git reset --hard origin/main`
   - this **discards** local commits
   - and uncommitted changes
4. Clean untracked files: `git clean -fd`
2. (This line is numbered wrongly but still an item.)

Text right after:
- a bullet interrupting the paragraph
- another bullet
* a different bullet starts a new list
Some text after the list that is a lazy continuation.
"""

INDENTED_AND_TABS = """\
A Makefile needs real tabs:

```makefile
build:
\tgcc -o app main.c
\t./app --version
```

An indented code block:

    for i in range(3):
        print(i)

    print("still code after a blank line")
Not code any more.

- item with a tab\tinside
-\titem whose content starts after a tab
"""

DEFINITIONS = """\
See the [documentation][docs] and the [FAQ][faq] for details.

## More

Nothing else here.

[docs]: https://example.com/docs
[faq]: https://example.com/faq "Frequently asked"
"""

LONG_CODE = """\
Here is a complete script:

```python
import argparse
import json
from pathlib import Path


def load(path: Path) -> dict:
    with path.open() as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    args = parser.parse_args()

    data = load(args.file)
    for key, value in sorted(data.items()):
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
```

Run it with `python script.py data.json`.

```
plain fence with no language
  and indentation kept
```
"""

MIXED_LISTS = """\
# Checklist

- [ ] write tests
- [x] fix the bug
- [ ] update the docs

1) first (parenthesis style)
2) second

   with a second paragraph
3) third

10. ten
11. eleven
    - nested under eleven

        nested code block inside the nested item

12. twelve
"""

CORPUS: dict[str, str] = {
    "install_steps": INSTALL_STEPS,
    "comparison": COMPARISON,
    "math": MATH,
    "nested_fences": NESTED_FENCES,
    "setext_and_rules": SETEXT_AND_RULES,
    "loose_list": LOOSE_LIST,
    "html_looking": HTML_LOOKING,
    "emphasis_and_quotes": EMPHASIS_AND_QUOTES,
    "tight_steps": TIGHT_STEPS,
    "indented_and_tabs": INDENTED_AND_TABS,
    "definitions": DEFINITIONS,
    "long_code": LONG_CODE,
    "mixed_lists": MIXED_LISTS,
}

# Short synthetic texts for the rules the answers above rarely reach.
EDGE_CASES: dict[str, str] = {
    "setext_after_table": "| a |\n|---|\n| 1 |\n===\nText after it\n\nNext\n",
    "empty_item_then_blank": "-\n\n  not in the item\n\nNext paragraph\n",
    "html_interrupts_paragraph": "Text\n<div>\nhtml\n</div>\n\nAfter the div\n",
    "html_type_7": "<span class=\"x\">\n\nText after a span line\n",
    "quote_lazy_then_lists": "> quote\ncontinued lazily\n\n- a\n\n  b\n- c\n",
    "loose_by_children": "1. a\n\n   b\n2. c\n3. d\n4. e\n",
    "nested_loose_outer_tight": "- a\n  - b\n\n  - c\n- d\n- e\n- f\n",
    "two_digit_numbers": "10. a\n11. b\n12. c\n13. d\n",
    "bullet_change": "* a\n* b\n- c\n- d\n+ e\n",
    "indented_after_paragraph": "Para\n    not code\n\n    code\n\nText\n",
    "unclosed_fence": "Intro\n\n```\nunclosed fence\n\nmore lines\nand more\n",
    "tilde_holds_backticks": "~~~\n```\n~~~\nafter the tildes\n",
    "indented_fence": "   ```py\n   indented fence\n   ```\nText after it\n",
    "one_space_items": " - one\n - two\n - three\n\nText\n",
    "fence_in_quote": "> ```\n> code\n\nText after the quote\n",
    "fence_ends_list": "- a\n```\ncode\n```\n- b\n- c\n",
    "rules_and_headings": "Text\n***\nMore\n# H1\n## H2\nText\n### H3\n___\nEnd\n",
    "html_comments": "<!-- c -->\nText\n\n<!--\n\n-->\nMore\n",
    "hard_breaks": "Line one  \nLine two\n\nText\\\nbreak\n",
    "definition_after_use": "[x]\n\nMiddle paragraph\n\n[x]: /url\n\nText\n",
    "tab_items": "-\tA\n\n\tB\n-\tC\n\nEnd\n",
    "ordered_interrupt": "Text\n2. not a list\n1. a list\n2. item\n",
    "blank_start_item": "1.\n   first\n2.\n   second\n3. third\n",
    "deep_item_code": "- a\n\n        code in item\n- b\n- c\n",
    "quote_with_list": "> - a\n> - b\n>\n> - c\n\nAfter\n",
}
