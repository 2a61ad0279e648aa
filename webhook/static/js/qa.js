// The QA workspace's charts: each .chart element names its figure and the JSON endpoint that
// computes it; this file only turns those numbers into ECharts options and links each bar,
// point or cell to the drill-down page the server named for it.
(function () {
  "use strict";

  var TIER_COLOURS = { red: "#d83931", yellow: "#de7802", blue: "#245bdb" };
  var topicNames = JSON.parse(document.querySelector(".charts").dataset.topicNames);

  function topicName(code) { return topicNames[code] || code; }

  function volume(chart) {
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { top: 40, left: 40, right: 16, bottom: 32 },
      xAxis: { type: "category", data: chart.buckets },
      yAxis: { type: "value", minInterval: 1 },
      series: chart.series.map(function (s) {
        return { id: s.name, name: topicName(s.name), type: "bar", stack: "complaints", data: s.data };
      })
    };
  }

  function negativeShare(chart) {
    return {
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v == null ? "—" : (v * 100).toFixed(1) + "%"; } },
      grid: { top: 24, left: 48, right: 16, bottom: 32 },
      xAxis: { type: "category", data: chart.buckets },
      yAxis: { type: "value", min: 0, max: 1, axisLabel: { formatter: function (v) { return v * 100 + "%"; } } },
      series: [{ id: "", name: "负面占比 negative share", type: "line", connectNulls: false, data: chart.share }]
    };
  }

  function heatmap(chart) {
    return {
      tooltip: { position: "top" },
      grid: { top: 16, left: 8, right: 16, bottom: 64, containLabel: true },
      xAxis: { type: "category", data: chart.columns, splitArea: { show: true }, axisLabel: { interval: 0 } },
      yAxis: { type: "category", data: chart.topics.map(topicName), splitArea: { show: true } },
      visualMap: { min: 0, max: Math.max(chart.max, 1), calculable: true, orient: "horizontal", left: "center",
                   bottom: 0, itemHeight: 120 },
      series: [{ id: "cells", name: "投诉 complaints", type: "heatmap", data: chart.cells,
                 label: { show: true } }]
    };
  }

  function tiers(chart) {
    var bars = chart.customers.map(function (s) {
      return { id: s.name, name: s.name + " 客户 customers", type: "bar", stack: "customers", data: s.data,
               itemStyle: { color: TIER_COLOURS[s.name] } };
    });
    var lines = chart.alerts.map(function (s) {
      return { id: s.name + "/alerts", name: s.name + " 预警 alerts", type: "line", data: s.data,
               lineStyle: { type: "dashed" }, itemStyle: { color: TIER_COLOURS[s.name] } };
    });
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { top: 40, left: 40, right: 16, bottom: 32 },
      xAxis: { type: "category", data: chart.buckets },
      yAxis: { type: "value", minInterval: 1 },
      series: bars.concat(lines)
    };
  }

  var MEASURES = { customers_alerted: "预警客户 alerted", handled: "已处理 handled",
                   handled_in_time: "按时处理 handled in time", ordered_again: "再次下单 ordered again" };

  function outcomes(chart) {
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { top: 40, left: 40, right: 16, bottom: 32 },
      xAxis: { type: "category", data: chart.tiers },
      yAxis: { type: "value", minInterval: 1 },
      series: chart.measures.map(function (measure, index) {
        return { id: measure, name: MEASURES[measure], type: "bar",
                 data: chart.values.map(function (row) { return row[index]; }) };
      })
    };
  }

  var OPTIONS = { "volume": volume, "negative-share": negativeShare, "heatmap-source": heatmap,
                  "heatmap-channel": heatmap, "heatmap-category": heatmap, "tiers": tiers,
                  "outcomes": outcomes };

  function drillLink(chart, params) {
    if (!chart.drill) { return null; }
    if (params.seriesType === "heatmap") {
      return chart.drill[params.data[1]][params.data[0]];
    }
    var series = chart.drill[params.seriesId.replace(/\/alerts$/, "")] || chart.drill[""];
    return series && series[params.dataIndex];
  }

  function draw(element) {
    fetch(element.dataset.src, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error(answer.status + " " + answer.statusText); }
        return answer.json();
      })
      .then(function (figure) {
        var instance = echarts.init(element);
        instance.setOption(OPTIONS[element.dataset.figure](figure.chart));
        instance.on("click", function (params) {
          var link = drillLink(figure.chart, params);
          if (link) { window.location.assign(link); }
        });
        window.addEventListener("resize", function () { instance.resize(); });
        element.dataset.ready = "true";
      })
      .catch(function (error) {
        element.textContent = "无法加载 could not load: " + error.message;
        element.dataset.ready = "error";
      });
  }

  document.querySelectorAll(".chart[data-figure]").forEach(draw);
})();
