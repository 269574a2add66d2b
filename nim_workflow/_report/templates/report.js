// The report's only script: sorting, filtering and CSV download for every table.data.
// The tables are complete without it. It reads the raw values from data attributes (or the
// cell's text when no attribute is given, the text then being the value), loads nothing and
// sends nothing: the CSV is made in the page and handed to the browser as a Blob.
(function () {
  "use strict";
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function read(cell) {
    return cell.textContent.replace(/\s+/g, " ").trim();
  }
  function rawValue(cell) {
    return cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : read(cell);
  }
  function labelOf(cell) {
    return cell.hasAttribute("data-label") ? cell.getAttribute("data-label") : read(cell);
  }
  // One CSV field as Table.to_csv writes it: a formula-like start defused, quoted per RFC 4180.
  function csvField(text) {
    if (/^[=+\-@\t\r]/.test(text) && !/^-?[0-9]+(\.[0-9]+)?$/.test(text)) {
      text = "'" + text;
    }
    if (/[",\r\n]/.test(text)) {
      text = '"' + text.replace(/"/g, '""') + '"';
    }
    return text;
  }
  function sortKey(cell, kind) {
    var text = rawValue(cell);
    if (text === "") {
      return null;
    }
    if (kind === "number") {
      var number = Number(text);
      return isNaN(number) ? null : number;
    }
    return text;
  }

  function setUp(table) {
    var block = table.closest(".table-block");
    var tools = block && block.querySelector(".table-tools");
    var body = table.tBodies[0];
    if (!tools || !body || !table.tHead) {
      return;
    }
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var rows = Array.prototype.filter.call(body.rows, function (row) {
      return !row.classList.contains("empty");
    });
    var total = rows.length;
    var filter = tools.querySelector(".table-filter");
    var count = tools.querySelector(".table-count");
    var haystacks = null;
    var shown = total;
    function showCount() {
      count.textContent = shown + " of " + total + " row" + (total === 1 ? "" : "s");
    }

    headers.forEach(function (th, index) {
      var button = th.querySelector("button.sort");
      if (!button) {
        return;
      }
      button.addEventListener("click", function () {
        var kind = th.getAttribute("data-sort");
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var keyed = rows.map(function (row, position) {
          return [sortKey(row.cells[index], kind), position, row];
        });
        keyed.sort(function (a, b) {
          if (a[0] === null || b[0] === null) {
            // Empty values go last either way.
            return a[0] === b[0] ? a[1] - b[1] : a[0] === null ? 1 : -1;
          }
          var order;
          if (kind === "number") {
            order = a[0] - b[0];
          } else if (kind === "date") {
            order = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
          } else {
            order = collator.compare(a[0], b[0]);
          }
          return (ascending ? order : -order) || a[1] - b[1];
        });
        rows = keyed.map(function (item) {
          return item[2];
        });
        var fragment = document.createDocumentFragment();
        rows.forEach(function (row) {
          fragment.appendChild(row);
        });
        body.appendChild(fragment);
      });
    });

    filter.addEventListener("input", function () {
      if (haystacks === null) {
        haystacks = new Map();
        rows.forEach(function (row) {
          var parts = [row.textContent];
          Array.prototype.forEach.call(row.cells, function (cell) {
            parts.push(cell.getAttribute("data-value") || "", cell.getAttribute("title") || "");
          });
          haystacks.set(row, parts.join(" ").replace(/\s+/g, " ").toLowerCase());
        });
      }
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      shown = 0;
      rows.forEach(function (row) {
        var text = haystacks.get(row);
        var match = words.every(function (word) {
          return text.indexOf(word) >= 0;
        });
        row.hidden = !match;
        if (match) {
          shown += 1;
        }
      });
      showCount();
    });

    // Every row, shown or filtered out, in the order drawn; raw values, and titles beside them.
    function toCsv() {
      var header = [];
      headers.forEach(function (th) {
        var key = th.getAttribute("data-key");
        header.push(key);
        if (th.hasAttribute("data-titled")) {
          header.push(key + "_title");
        }
      });
      var lines = [header.map(csvField).join(",")];
      rows.forEach(function (row) {
        var fields = [];
        headers.forEach(function (th, index) {
          var cell = row.cells[index];
          fields.push(csvField(rawValue(cell)));
          if (th.hasAttribute("data-titled")) {
            fields.push(csvField(labelOf(cell)));
          }
        });
        lines.push(fields.join(","));
      });
      return lines.join("\r\n") + "\r\n";
    }
    tools.querySelector(".table-csv").addEventListener("click", function () {
      var blob = new Blob([toCsv()], { type: "text/csv;charset=utf-8" });
      var url = URL.createObjectURL(blob);
      var link = document.createElement("a");
      link.href = url;
      link.download = table.getAttribute("data-file") || "table.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () {
        URL.revokeObjectURL(url);
      }, 1000);
    });

    showCount();
    tools.hidden = false;
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.data"), setUp);
})();
